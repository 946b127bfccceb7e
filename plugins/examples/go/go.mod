module hookwise-example-go

go 1.24

require hookwise/sdk v0.0.0

replace hookwise/sdk => ../../sdk/go
