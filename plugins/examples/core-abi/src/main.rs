//! Core module ABI: the request through `hookwise.request_read`, log, HTTP and database through
//! the `hookwise` import module, the answer through `hookwise.output` / `hookwise.error`.
//! `input.mode` picks what to do; the host tests drive every branch.

use serde_json::{Value, json};

#[link(wasm_import_module = "hookwise")]
unsafe extern "C" {
    fn request_read(ptr: *mut u8, cap: i32) -> i32;
    fn output(ptr: *const u8, len: i32);
    fn error(kind: i32, ptr: *const u8, len: i32, retry_after_ms: i64);
    fn log(level: i32, ptr: *const u8, len: i32);
    fn http_send(ptr: *const u8, len: i32) -> i32;
    fn db_execute(
        conn_ptr: *const u8,
        conn_len: i32,
        sql_ptr: *const u8,
        sql_len: i32,
        params_ptr: *const u8,
        params_len: i32,
    ) -> i32;
    fn result_read(ptr: *mut u8, cap: i32) -> i32;
}

fn request() -> Value {
    // SAFETY: the host writes at most `cap` bytes to a buffer of that size.
    let len = unsafe { request_read(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; len.max(0) as usize];
    let again = unsafe { request_read(buf.as_mut_ptr(), buf.len() as i32) };
    assert_eq!(again, len);
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

fn say(level: i32, text: &str) {
    // SAFETY: a valid UTF-8 slice.
    unsafe { log(level, text.as_ptr(), text.len() as i32) }
}

/// Reads the result of the last `http_send` / `db_execute` that returned `n`.
fn result(n: i32) -> Result<Value, String> {
    let len = n.unsigned_abs() as usize;
    let mut buf = vec![0u8; len];
    // SAFETY: the host writes at most `len` bytes.
    let whole = unsafe { result_read(buf.as_mut_ptr(), len as i32) };
    assert_eq!(whole as usize, len);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if n >= 0 {
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    } else {
        Err(text)
    }
}

fn http(request: &Value) -> Result<Value, String> {
    let text = request.to_string();
    result(unsafe { http_send(text.as_ptr(), text.len() as i32) })
}

fn db(connection: &str, sql: &str, params: &Value) -> Result<Value, String> {
    let params = params.to_string();
    result(unsafe {
        db_execute(
            connection.as_ptr(),
            connection.len() as i32,
            sql.as_ptr(),
            sql.len() as i32,
            params.as_ptr(),
            params.len() as i32,
        )
    })
}

fn answer(value: &Value) {
    let text = value.to_string();
    unsafe { output(text.as_ptr(), text.len() as i32) }
}

fn fail(fatal: bool, message: &str, retry_after_ms: i64) {
    unsafe {
        error(
            i32::from(fatal),
            message.as_ptr(),
            message.len() as i32,
            retry_after_ms,
        )
    }
}

fn main() {
    let request = request();
    let input = &request["input"];
    match input["mode"].as_str().unwrap_or("all") {
        "all" => {
            for level in 0..5 {
                say(level, &format!("level {level}"));
            }
            let mut done = json!({
                "event": request["event"]["id"],
                "key": request["ctx"]["idempotency_key"],
                "payload_ref": request["event"]["payload"]["ref"],
            });
            if let Some(url) = input["url"].as_str() {
                done["http"] = match http(&json!({
                    "method": "POST",
                    "url": url,
                    "headers": {"content-type": "application/json"},
                    "body": json!({"ref": request["event"]["payload"]["ref"]}).to_string(),
                })) {
                    Ok(response) => response,
                    Err(e) => json!({"error": e}),
                };
            }
            if let Some(connection) = input["connection"].as_str() {
                let sql = input["sql"]
                    .as_str()
                    .unwrap_or("INSERT INTO pushes (ref, event) VALUES (?, ?)");
                let params = match input.get("params") {
                    Some(params) => params.clone(),
                    None => json!([request["event"]["payload"]["ref"], request["event"]["id"]]),
                };
                done["db"] = match db(connection, sql, &params) {
                    Ok(rows) => rows,
                    Err(e) => json!({"error": e}),
                };
            }
            answer(&done);
        }
        "fatal" => fail(true, "the input says fatal", -1),
        "retry" => {
            fail(false, "try later", 1500);
            std::process::exit(1);
        }
        "out-of-bounds" => unsafe { log(2, 0xFFFF_FFF0usize as *const u8, 64) },
        "bad-http" => {
            let n = unsafe { http_send(b"not json".as_ptr(), 8) };
            let message = result(n).err().unwrap_or_default();
            answer(&json!({"n": n, "error": message}));
        }
        // Stdout still works, and a later `output` wins over it.
        "stdout" => println!("{}", json!({"from": "stdout"})),
        other => fail(true, &format!("unknown mode {other}"), -1),
    }
}
