#!/usr/bin/env bash
# Seeds fuzz/corpus/NAME/ from the repository's own fixtures (rules, configs, payloads, the
# YAML examples in docs/) and a few hand-written inputs. Only empty corpora are seeded; run.sh
# calls this first. Fields of one input are separated by the byte 0xFF (see
# engine/src/fuzzing.rs).
set -euo pipefail
cd "$(dirname "$0")"
root=..
n=0
# seed TARGET FILE-CONTENT: one seed file, named by a running number.
seed() { n=$((n + 1)); printf '%s' "$2" >"corpus/$1/seed-$n"; }
sep=$'\xff'
empty() { [ -z "$(ls -A "corpus/$1" 2>/dev/null)" ]; }
want() { mkdir -p "corpus/$1"; empty "$1"; }

# Payloads: every JSON fixture, plus forms as Slack and Twilio send them.
payloads=("$root"/examples/quickstart/push.json "$root"/engine/src/verify/testdata/*.json
  "$root"/engine/src/rules/testdata/snapshot_events.json)
forms=('token=abc&team_id=T1&command=%2Fdeploy&text=api+v1.2&user_name=alice'
  'payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%7D'
  'AccountSid=AC123&Body=Hello+%F0%9F%91%8B&From=%2B14158141829&To=%2B14155552671&MessageSid=SM1')
for t in payload_read sign_verify conditions; do
  want "$t" || continue
  for f in "${payloads[@]}"; do seed "$t" "$(cat "$f")"; done
  for f in "${forms[@]}"; do seed "$t" "$f"; done
done

# Rule files: the shipped rules, the quickstart's, the snapshot test's; YAML blocks of docs/.
yaml_blocks() { awk '/^```yaml/{on=1; out=""; next} /^```/{if(on) printf "%s%c", out, 0; on=0; next} on{out=out $0 "\n"}' "$@"; }
if want rule_file; then
  for f in "$root"/rules/*/*.yaml "$root"/examples/quickstart/rules/*.yaml \
    "$root"/engine/src/rules/testdata/snapshot_rules.yaml; do seed rule_file "$(cat "$f")"; done
  while IFS= read -r -d '' block; do seed rule_file "$block"; done < <(yaml_blocks "$root"/docs/rules.md)
fi
if want config_file; then
  for f in "$root"/examples/quickstart/hookwise.yaml "$root"/tests/rules/hookwise.yaml; do
    seed config_file "$(cat "$f")"
  done
  while IFS= read -r -d '' block; do seed config_file "$block"; done \
    < <(yaml_blocks "$root"/docs/ingress.md "$root"/docs/providers.md "$root"/docs/plugins.md \
      "$root"/docs/store.md "$root"/docs/dispatch.md "$root"/docs/admin.md)
fi

# Paths and templates as the shipped rules write them, over the quickstart's push.
push="$(cat "$root"/examples/quickstart/push.json)"
if want json_path; then
  for p in '$.ref' '$.commits[*].message' '$..name' '$.commits[0].id' '$.commits[-1]' \
    "\$['repository']['full_name']" '$.commits[?@.id]' '$.*'; do
    seed json_path "$p$sep$push"
  done
fi
if want template; then
  for t in '{{ payload.ref }}' '{{ payload.commits | length }}' '{{ payload.ref[11:] }}' \
    "{{ headers['x-github-event'] }} by {{ event.source }}" 'Bearer ${secret:TOKEN}' \
    'payload.repository.private == false' '{% for c in payload.commits %}{{ c.id }},{% endfor %}' \
    '{{ payload | tojson }}' "{{ payload.pusher.name | default('nobody') | upper }}"; do
    seed template "$t$sep$push"
  done
fi

# Requests: signature headers of the right shapes with signatures nobody made (verify_request
# asserts no request it is given verifies, so no seed may carry a genuine signature).
body='{"id":"evt_1","type":"push","a":[1,2]}'
url='https://hooks.example.org/hooks/src?x=1'
hdrs=('X-Hub-Signature-256:sha256=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9'
  'Stripe-Signature:t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39'
  'webhook-id:msg_p5jXN8AQM9LWM0D4loKWxJek'"$sep"'webhook-timestamp:1700000000'"$sep"'webhook-signature:v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,aGVsbG8='
  'X-Slack-Request-Timestamp:1700000000'"$sep"'X-Slack-Signature:v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503'
  'X-Twilio-Signature:0/KCTR6DLpKmkAf8muzZqo1nDgQ='
  'X-Gitlab-Token:not-the-secret'
  'X-Signature-Ed25519:92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'"$sep"'X-Signature-Timestamp:1700000000'
  'X-HubSpot-Signature-v3:aGVsbG8='"$sep"'X-HubSpot-Request-Timestamp:1700000000000'
  'Twitch-Eventsub-Message-Id:m1'"$sep"'Twitch-Eventsub-Message-Timestamp:2023-11-14T22:13:20.123456789Z'"$sep"'Twitch-Eventsub-Message-Signature:sha256=00'
  'X-Signature:sha256=00ff'"$sep"'X-Timestamp:1700000000')
if want verify_request; then
  for h in "${hdrs[@]}"; do seed verify_request "$url$sep$body$sep$h"; done
  seed verify_request "$url${sep}timestamp=1700000000&token=abc&signature=00ff$sep"
fi
if want signature_headers; then
  for h in "${hdrs[@]}"; do seed signature_headers "${h#*:}"; done
fi
if want identify; then
  seed identify "$push${sep}X-GitHub-Event:push${sep}X-GitHub-Delivery:d-1"
  seed identify '{"type":"url_verification","challenge":"c1","token":"t"}'
  seed identify '{"event":"endpoint.url_validation","payload":{"plainToken":"p1"}}'
  seed identify '{"challenge":"c2","subscription":{"type":"channel.follow"}}'"${sep}Twitch-Eventsub-Message-Type:webhook_callback_verification"
  seed identify '{"type":1}'
  seed identify '[{"event":"delivered","sg_event_id":"e1"},{"event":"open","sg_event_id":"e2"}]'
  for f in "${forms[@]}"; do seed identify "$f"; done
fi
if want hmac_scheme_content; then
  for c in '{body}' '{timestamp}.{body}' '{method} {url}\n{body}' '{{literal}}{timestamp}'; do
    seed hmac_scheme_content "$c$sep$body"
  done
fi
if want check_keys; then
  for k in 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' 'whpk_3d4017c3e843895a92b70aa74d1b7ebc' \
    '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c' \
    'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==' \
    ' ' 'shhh'; do seed check_keys "$k"; done
fi
if want form_body; then
  seed form_body "token${sep}abc${sep}command$sep/deploy${sep}text${sep}api v1.2 & more"
  seed form_body "payload$sep"'{"type":"block_actions"}'
  seed form_body "Body${sep}Hello 👋${sep}Body${sep}again"
fi
if want command_stdout; then
  for o in '{"ok":true,"rows":[1,2]}' '  "text"  ' 'null' 'not json' '{"a":'; do seed command_stdout "$o"; done
fi
if want command_outcome; then
  seed command_outcome '{"error":{"kind":"fatal","message":"bad input"}}'
  seed command_outcome '{"error":{"kind":"retryable","message":"busy","retry_after_ms":1500}}'
  seed command_outcome "oops$sep"$'log line\nthread \'main\' panicked at src/lib.rs:3:5:\nboom\n'
fi
exit 0
