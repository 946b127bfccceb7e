//go:build !wasip1

package hookwise

import "unsafe"

// Outside GOOS=wasip1 there is no host: these stubs let `go vet` and editors type-check a
// plugin on the developer's machine. Calling any of them panics; build plugins with
// GOOS=wasip1 GOARCH=wasm.

func noHost() { panic("hookwise: build with GOOS=wasip1 GOARCH=wasm and run in hookwise") }

func hwRequestRead(unsafe.Pointer, int32) int32 { noHost(); return 0 }
func hwResultRead(unsafe.Pointer, int32) int32  { noHost(); return 0 }
func hwOutput(unsafe.Pointer, int32)            { noHost() }
func hwError(int32, unsafe.Pointer, int32, int64) {
	noHost()
}
func hwLog(int32, unsafe.Pointer, int32)     { noHost() }
func hwHTTPSend(unsafe.Pointer, int32) int32 { noHost(); return 0 }
func hwDBExecute(unsafe.Pointer, int32, unsafe.Pointer, int32, unsafe.Pointer, int32) int32 {
	noHost()
	return 0
}
