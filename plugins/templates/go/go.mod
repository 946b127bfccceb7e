module __NAME__

go 1.24

require hookwise/sdk v0.0.0

// The hookwise Go SDK, copied into sdk/ by `hookwise plugins new`.
replace hookwise/sdk => ./sdk
