//! Command-module ABI: `{"ctx","event","input"}` on stdin, output JSON on
//! stdout, logs on stderr, exit status 0 for success.

use serde_json::{Value, json};
use std::hint::black_box;
use std::io::{Read, Write};

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        std::process::exit(2);
    }
    let request: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let mode = request["input"]["mode"]
        .as_str()
        .unwrap_or("ok")
        .to_string();
    eprintln!("command-echo mode={mode}");
    let mut stdout = std::io::stdout();
    match mode.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "fatal" => {
            let _ = writeln!(
                stdout,
                "{}",
                json!({"error": {"kind": "fatal", "message": "bad input"}})
            );
            std::process::exit(1);
        }
        "crash" => std::process::exit(3),
        "stderr-flood" => {
            for _ in 0..100_000 {
                eprintln!("{}", "z".repeat(100));
            }
            let _ = writeln!(stdout, "{}", json!({"flooded": true}));
        }
        _ => {
            let out = json!({
                "echo": request["input"],
                "key": request["ctx"]["idempotency_key"],
                "event": request["event"]["id"],
            });
            let _ = writeln!(stdout, "{out}");
        }
    }
}
