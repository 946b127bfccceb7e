#!/usr/bin/env bash
# The quickstart: a GitHub push, signed with `hookwise sign` and sent with curl, becomes a row in
# app.db (write-db) and a message to a local webhook receiver (notify).
#   HOOKWISE=path/to/hookwise ./demo.sh
set -euo pipefail
cd "$(dirname "$0")"
HOOKWISE="${HOOKWISE:-hookwise}"
PORT="${PORT:-8443}"
ADMIN_PORT="${ADMIN_PORT:-9091}"
RECEIVER_PORT="${RECEIVER_PORT:-9000}"
export GITHUB_WEBHOOK_SECRET="${GITHUB_WEBHOOK_SECRET:-quickstart-secret}"
rm -f app.db received.jsonl
python3 -c 'import sqlite3; sqlite3.connect("app.db").executescript(open("schema.sql").read())'

python3 receiver.py "$RECEIVER_PORT" received.jsonl &
receiver=$!
"$HOOKWISE" serve --config hookwise.yaml --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" &
server=$!
trap 'kill $server $receiver 2>/dev/null || true' EXIT
for _ in $(seq 150); do curl -ksf "https://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done

# Sign the push as GitHub would (headers first, then a blank line), and send it.
url="https://127.0.0.1:$PORT/hooks/github"
"$HOOKWISE" sign --provider github --secret "$GITHUB_WEBHOOK_SECRET" --url "$url" < push.json > signed.txt
headers=()
while IFS= read -r line; do
  [ -z "$line" ] && break
  headers+=(-H "$line")
done < signed.txt
curl -ksS -X POST "$url" "${headers[@]}" -H 'Content-Type: application/json' --data-binary @push.json
echo

# Both actions run in the background; wait for them.
rows() { python3 -c 'import sqlite3; print(sqlite3.connect("app.db").execute("SELECT COUNT(*) FROM pushes").fetchone()[0])'; }
for _ in $(seq 150); do
  [ -s received.jsonl ] && [ "$(rows)" = 1 ] && break
  sleep 0.2
done
echo "row in app.db:"
python3 -c 'import sqlite3; print(sqlite3.connect("app.db").execute("SELECT * FROM pushes").fetchall())'
echo "message received:"
cat received.jsonl
