module hookwise/sdk

go 1.24
