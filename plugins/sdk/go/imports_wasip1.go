//go:build wasip1

package hookwise

import "unsafe"

// The functions of the `hookwise` import module (see "The core module ABI" in the
// hookwise plugin docs). Strings are a pointer and a length in the module's memory.

//go:wasmimport hookwise request_read
func hwRequestRead(ptr unsafe.Pointer, capacity int32) int32

//go:wasmimport hookwise result_read
func hwResultRead(ptr unsafe.Pointer, capacity int32) int32

//go:wasmimport hookwise output
func hwOutput(ptr unsafe.Pointer, length int32)

//go:wasmimport hookwise error
func hwError(kind int32, ptr unsafe.Pointer, length int32, retryAfterMs int64)

//go:wasmimport hookwise log
func hwLog(level int32, ptr unsafe.Pointer, length int32)

//go:wasmimport hookwise http_send
func hwHTTPSend(ptr unsafe.Pointer, length int32) int32

//go:wasmimport hookwise db_execute
func hwDBExecute(connPtr unsafe.Pointer, connLen int32, sqlPtr unsafe.Pointer, sqlLen int32, paramsPtr unsafe.Pointer, paramsLen int32) int32
