#!/usr/bin/env python3
"""Writes bad-input.jsonl: the bad-input corpus replayed by tests/corpus.rs.

One request per line: {"id", "method", "path", "auth", "headers", "body" |
"body_b64", "expect"}. `auth` is how the replay signs it: instantly,
calcom, c2s, twilio (a valid signature over the exact bytes), bearer (an
admin token), none (as written). `expect` is 4xx unless the provider's
protocol answers otherwise (twilio_ignored: 200 TwiML, recorded `ignored`;
c2s_invalid: 200 with every element `invalid`). Path tokens: {uuid} (a
random id), {contact} and {segment} (rows the replay creates first).
Re-run after editing: python3 infra/local/tests/corpus/generate.py
"""
import base64, json, os

out = []
def add(method, path, auth, body=None, ct="application/json", headers=None, b64=None, expect="4xx", note=""):
    h = dict(headers or {})
    if ct is not None:
        h["content-type"] = ct
    e = {"id": f"{len(out)+1:03d}", "note": note, "method": method, "path": path, "auth": auth, "headers": h, "expect": expect}
    if b64 is not None:
        e["body_b64"] = base64.b64encode(b64).decode()
    elif body is not None:
        e["body"] = body
    out.append(e)

# Expanded by the replay: {{BIG:n}} → n × "x", {{ARRAY:n}} → n zeros separated by commas.
BIG = "{{BIG:300000}}"
INVALID_UTF8 = b'{"event_type": "reply_received", "lead_email": "a\xff\xfe@b.com"}'
bad_json = ['{', '{"a":', '{"a": 1,}', "{'a': 1}", '[1, 2', 'nul', '{"a": tru}', '\x00', '{"a": "\\ud800"}', '{"a": 1} trailing', '"just a string', '{"a":"\\x41"}']

# ---- Instantly (signed unless the case is auth)
I = "/crm/webhooks/instantly/reply"
reply = {"event_type": "reply_received", "lead_email": "ana@example.com", "reply_text": "Hi", "email_id": "e-1", "timestamp": "2026-11-20T10:00:00Z"}
for b in bad_json: add("POST", I, "instantly", b, note="invalid JSON")
add("POST", I, "instantly", json.dumps(reply)[:40], note="truncated JSON")
for field, val in [("lead_email", 5), ("lead_email", ["a@b.com"]), ("reply_text", {"t": 1}), ("event_type", 7), ("timestamp", True),
                   ("lead_email", "not-an-email"), ("lead_email", "a\u0000"), ("timestamp", "yesterday"), ("timestamp", "99999-01-01T00:00:00Z"),
                   ("reply_text", None), ("lead_email", None), ("lead_email", "x" * 400 + "@b.com"), ("timestamp", "2026-13-45T99:00:00Z")]:
    b = dict(reply); b[field] = val
    add("POST", I, "instantly", json.dumps(b), note=f"wrong {field}")
add("POST", I, "instantly", json.dumps({"lead": {"email": 5}, "message": {"text": "x"}}), note="seed shape, wrong type")
add("POST", I, "instantly", json.dumps({"lead": [], "message": {"text": "x"}}), note="seed shape, lead array")
add("POST", I, "instantly", '{"event_type": "reply_received", "event_type": 5, "lead_email": "a@b.com"}', note="duplicate keys")
add("POST", I, "instantly", json.dumps([reply]), note="array body")
add("POST", I, "instantly", "1e400", note="overflowing number")
add("POST", I, "instantly", json.dumps({**reply, "reply_text": 1e308 * 10 if False else 123456789012345678901234567890}), note="number for text")
add("POST", I, "instantly", json.dumps({**reply, "reply_text": BIG}), note="huge body (413)")
add("POST", I, "instantly", json.dumps({**reply, "tags": "__ARR__"}).replace('"__ARR__"', "[{{ARRAY:140000}}]"), note="huge array (413)")
add("POST", I, "instantly", None, b64=INVALID_UTF8, note="invalid UTF-8")
add("POST", I, "instantly", json.dumps(reply), ct="text/plain", note="wrong content type")
add("POST", I, "instantly", json.dumps(reply), ct=None, note="no content type")
add("POST", I, "instantly", json.dumps(reply), ct="application/x-www-form-urlencoded", note="form content type")
add("POST", I, "none", json.dumps(reply), note="no signature")
add("POST", I, "none", json.dumps(reply), headers={"x-signature": "sha256=00"}, note="short signature")
add("POST", I, "none", json.dumps(reply), headers={"x-signature": "zz" * 32}, note="non-hex signature")
add("POST", I, "none", json.dumps(reply), headers={"x-webhook-secret": "guess"}, note="wrong shared secret")
add("POST", I, "none", json.dumps(reply), headers={"x-webhook-secret": ""}, note="empty shared secret")
add("POST", I, "instantly", json.dumps(reply), headers={"idempotency-key": "k" * 300}, note="oversized Idempotency-Key")
add("POST", I, "instantly", json.dumps(reply), headers={"idempotency-key": "a b\tc"}, note="Idempotency-Key with spaces")
add("POST", I, "instantly", "", note="empty body")

# ---- Cal.com
C = "/crm/webhooks/calcom/booking"
booking = {"triggerEvent": "BOOKING_CREATED", "createdAt": "2026-11-20T10:00:00Z", "payload": {"uid": "u1", "title": "Demo", "startTime": "2026-11-25T10:00:00Z", "endTime": "2026-11-25T10:30:00Z", "attendees": [{"email": "ana@example.com", "name": "Ana"}]}}
def bk(**kw):
    b = json.loads(json.dumps(booking)); b["payload"].update(kw); return json.dumps(b)
for b in bad_json: add("POST", C, "calcom", b, note="invalid JSON")
add("POST", C, "calcom", json.dumps(booking)[:50], note="truncated JSON")
for kw, note in [({"uid": 5}, "uid number"), ({"uid": ""}, "uid empty"), ({"uid": "u" * 300}, "uid too long"), ({"uid": "\u0000"}, "uid NUL only"),
                 ({"startTime": "soon"}, "bad start"), ({"startTime": "2026-11-25T10:00:00"}, "start without zone"), ({"endTime": 5}, "end number"),
                 ({"startTime": "99999-01-01T00:00:00Z"}, "start out of range"), ({"attendees": "ana"}, "attendees string"), ({"attendees": [5]}, "attendee number"),
                 ({"attendees": [{"email": "nope", "name": "x"}]}, "attendee bad email"), ({"attendees": [{"email": "a\u0000", "name": "x"}]}, "attendee NUL email"),
                 ({"attendees": []}, "no attendees"), ({"title": ["x"]}, "title array"), ({"attendees": [{"email": "a\u0000"}] * 5000}, "huge attendee list, bad e-mails")]:
    add("POST", C, "calcom", bk(**kw), note=note)
add("POST", C, "calcom", json.dumps({"triggerEvent": 5, "payload": {}}), note="trigger number")
add("POST", C, "calcom", json.dumps({"triggerEvent": "BOOKING_CREATED", "payload": []}), note="payload array")
add("POST", C, "calcom", json.dumps({"triggerEvent": "BOOKING_CREATED"}), note="no payload")
add("POST", C, "calcom", '{"triggerEvent": "PING", "triggerEvent": 5, "payload": 1}', note="duplicate keys")
add("POST", C, "calcom", json.dumps(booking).replace('"u1"', '"u1", "bookingId": 1e400'), note="overflowing number")
add("POST", C, "calcom", json.dumps(booking).replace('"u1"', '"u1", "bookingId": 123456789012345678901234567890'), note="bookingId overflow")
add("POST", C, "calcom", bk(description=BIG), note="huge body (413)")
add("POST", C, "calcom", None, b64=b'{"triggerEvent": "BOOKING_CREATED", "payload": {"uid": "\xc3\x28"}}', note="invalid UTF-8")
add("POST", C, "calcom", json.dumps(booking), ct="text/plain", note="wrong content type")
add("POST", C, "calcom", json.dumps(booking), ct=None, note="no content type")
add("POST", C, "none", json.dumps(booking), note="no signature")
add("POST", C, "none", json.dumps(booking), headers={"x-cal-signature-256": "no-secret-provided"}, note="placeholder signature")
add("POST", C, "none", json.dumps(booking), headers={"x-cal-signature-256": "00" * 32}, note="wrong signature")
add("POST", C, "calcom", json.dumps(booking), headers={"idempotency-key": "k" * 300}, note="oversized Idempotency-Key")
add("POST", C, "calcom", "", note="empty body")

# ---- C2S
S = "/api/v1/webhooks/c2s"
lead = {"hook_action": "on_create_lead", "id": "L1", "attributes": {"customer": {"name": "Ana", "email": "ana@example.com"}, "updated_at": "2026-11-20T10:00:00Z"}}
for b in bad_json: add("POST", S, "c2s", b, note="invalid JSON")
add("POST", S, "c2s", json.dumps(lead)[:30], note="truncated JSON")
add("POST", S, "c2s", "[]", note="empty array")
add("POST", S, "c2s", json.dumps([lead] * 1001), note="too many elements")
add("POST", S, "c2s", "5", note="number body")
add("POST", S, "c2s", '"lead"', note="string body")
add("POST", S, "c2s", json.dumps(lead), ct="text/plain", note="wrong content type")
add("POST", S, "none", json.dumps(lead), note="no token")
add("POST", S, "none", json.dumps(lead), headers={"x-webhook-token": "guess"}, note="wrong token")
add("POST", "/api/v1/webhooks/c2s?token=guess", "none", json.dumps(lead), note="wrong query token")
add("POST", S, "c2s", json.dumps({**lead, "pad": "{{BIG:1100000}}"}), note="huge body (413)")
add("POST", S, "c2s", None, b64=b'{"hook_action": "on_create_lead", "id": "\xff"}', note="invalid UTF-8")
add("POST", S, "c2s", "", note="empty body")
for el, note in [({**lead, "hook_action": "on_explode"}, "unknown hook_action"), ({**lead, "hook_action": 5}, "hook_action number"),
                 ({**lead, "id": ".."}, "lead id dot-dot"), ({**lead, "id": "."}, "lead id dot"), ({**lead, "id": "a/b"}, "lead id slash"),
                 ({**lead, "id": ""}, "empty id"), ({**lead, "id": {"x": 1}}, "id object"), ({**lead, "attributes": []}, "attributes array"),
                 ({**lead, "attributes": {"customer": []}}, "customer []"), ({**lead, "attributes": {"customer": "Ana"}}, "customer string"),
                 ({**lead, "attributes": {**lead["attributes"], "updated_at": "yesterday"}}, "bad updated_at"),
                 ({**lead, "attributes": {**lead["attributes"], "updated_at": 1e300}}, "updated_at number"),
                 ({**lead, "id": "a\u0000/b"}, "NUL in id"), (5, "element number"), ([lead], "nested array")]:
    add("POST", S, "c2s", json.dumps([el]), expect="c2s_invalid", note=note)
add("GET", "/api/v1/webhooks/c2s/stats", "none", None, ct=None, note="stats without auth")
add("GET", "/api/v1/webhooks/c2s/stats", "none", None, ct=None, headers={"authorization": "Bearer x.y.z"}, note="stats malformed token")

# ---- Twilio
T = "/api/twilio/webhook"
F = "application/x-www-form-urlencoded"
add("POST", T, "twilio", "Body=%ZZ&From=%2B905321234567&MessageSid=SM1", ct=F, note="bad %-escape")
add("POST", T, "twilio", "Body=%C3&From=%2B905321234567&MessageSid=SM1", ct=F, note="escaped invalid UTF-8")
add("POST", T, "twilio", None, ct=F, b64=b"Body=\xff\xfe&MessageSid=SM1", note="raw invalid UTF-8")
add("POST", T, "twilio", "Body=%4", ct=F, note="truncated escape")
add("POST", T, "twilio", '{"MessageSid": "SM1"}', ct="application/json", note="JSON instead of a form")
add("POST", T, "twilio", "MessageSid=SM1", ct="text/plain", note="wrong content type")
add("POST", T, "twilio", "MessageSid=SM1", ct=None, note="no content type")
add("POST", T, "none", "MessageSid=SM1&From=%2B905321234567&Body=hi", ct=F, note="no signature")
add("POST", T, "none", "MessageSid=SM1&From=%2B905321234567&Body=hi", ct=F, headers={"x-twilio-signature": "bm9wZQ=="}, note="wrong signature")
add("POST", T, "twilio", "Body=" + "{{BIG:70000}}", ct=F, note="huge body (413)")
for body, note in [("MessageSid=hello&From=%2B905321234567&Body=hi", "SID hello"), ("MessageSid=SM-1&From=%2B905321234567&Body=hi", "SID with dash"),
                   ("MessageSid=SM1&From=call+me&Body=hi", "From not a phone"), ("MessageSid=SM1&From=%2B8612&Body=hi", "From too short"),
                   ("MessageSid=SM1&From=%2B905321234567&NumMedia=1&MediaUrl0=not-a-url", "media URL not a URL"),
                   ("MessageSid=SM1&From=%2B905321234567&NumMedia=1&MediaUrl0=javascript%3Aalert(1)", "media URL javascript"),
                   ("MessageSid=SM1&From=%2B905321234567&NumMedia=two", "NumMedia word"), ("MessageSid=SM1&From=%2B905321234567&NumMedia=99999999999999999999999", "NumMedia overflow"),
                   ("MessageSid=SM1&From=%2B905321234567&NumMedia=11", "NumMedia over 10"), ("MessageSid=SM1&From=%2B905321234567&NumMedia=1", "media URL missing"),
                   ("MessageSid=SM1&MessageStatus=failed&ErrorCode=x", "ErrorCode word"), ("MessageSid=SM1&MessageStatus=failed&ErrorCode=99999999999999", "ErrorCode overflow"),
                   ("MessageSid=SM1&MessageStatus=sent%0A1", "status with newline"), ("MessageSid=SM1&MessageStatus=" + "a" * 40, "status too long"),
                   ("MessageSid=SM%00&From=%2B905321234567&Body=hi", "NUL-only SID"), ("MessageSid=" + "A" * 80 + "&Body=x&From=%2B905321234567", "SID too long")]:
    add("POST", T, "twilio", body, ct=F, expect="twilio_ignored", note=note)

# ---- Authenticated JSON API routes: auth, content type, JSON, fields
routes_body = [
    ("POST", "/crm/actions/contacts"), ("POST", "/crm/actions/deals"), ("POST", "/crm/actions/deals/{uuid}/stage"),
    ("PATCH", "/api/messages/{uuid}"),
    ("POST", "/api/messages"), ("POST", "/api/messages/template"), ("POST", "/api/media/upload-url"),
    ("POST", "/api/v1/crm/campaigns"), ("PATCH", "/api/v1/crm/campaigns/{uuid}"), ("POST", "/api/v1/crm/campaigns/{uuid}/send"),
    ("POST", "/api/v1/crm/templates"), ("PATCH", "/api/v1/crm/templates/{uuid}"),
    ("POST", "/api/v1/crm/segments"), ("PATCH", "/api/v1/crm/segments/{uuid}"),
    ("PATCH", "/api/v1/crm/channels/email"), ("PUT", "/api/v1/crm/module"),
]
routes_get = [
    "/crm/pipelines", "/crm/deals", "/crm/contacts", "/crm/contacts/{uuid}", "/api/contacts/{contact}/messages", "/api/messages/events",
    "/api/debug/webhook-diagnostics", "/api/debug/messages?phone=%2B905321234567", "/api/v1/crm/campaigns", "/api/v1/crm/campaigns/{uuid}",
    "/api/v1/crm/campaigns/{uuid}/deliveries", "/api/v1/crm/templates", "/api/v1/crm/templates/{uuid}", "/api/v1/crm/segments",
    "/api/v1/crm/segments/{uuid}", "/api/v1/crm/segments/{segment}/preview", "/api/v1/crm/channels", "/api/v1/crm/audit", "/api/v1/crm/module",
]
for m, p in routes_body:
    add(m, p, "none", "{}", note="no token")
    add(m, p, "none", "{}", headers={"authorization": "Bearer not.a.jwt"}, note="malformed token")
    add(m, p, "none", "{}", headers={"authorization": "Basic YWRtaW46YWRtaW4="}, note="wrong scheme")
    add(m, p, "bearer", "{", note="truncated JSON")
    add(m, p, "bearer", "{}", ct="text/plain", note="wrong content type")
    add(m, p, "bearer", None, b64=b'{"name": "\xff"}', note="invalid UTF-8")
    add(m, p, "bearer", "[1,2]", note="array body")
    add(m, p, "bearer", json.dumps({"zzz_unknown": 1}), note="unknown field")
    add(m, p, "bearer", json.dumps({"name": BIG}), note="huge body (413)")
for p in routes_get:
    add("GET", p, "none", None, ct=None, note="no token")
    add("GET", p, "none", None, ct=None, headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, note="alg none token")
for m, p in [("POST", "/api/v1/crm/campaigns/{uuid}/pause"), ("POST", "/api/v1/crm/campaigns/{uuid}/resume"), ("POST", "/api/v1/crm/campaigns/{uuid}/cancel"),
             ("DELETE", "/api/v1/crm/templates/{uuid}"), ("DELETE", "/api/v1/crm/segments/{uuid}"),
             ("POST", "/api/v1/crm/contacts/{uuid}/opt-outs/email"), ("DELETE", "/api/v1/crm/contacts/{uuid}/opt-outs/email")]:
    add(m, p, "none", None, ct=None, note="no token")
    add(m, p, "bearer", None, ct=None, note="unknown id (404)")
add("POST", "/api/v1/crm/contacts/{contact}/opt-outs/carrier-pigeon", "bearer", None, ct=None, note="unknown channel")
add("POST", "/api/v1/crm/contacts/not-a-uuid/opt-outs/email", "bearer", None, ct=None, note="bad uuid")

# Field-level bad input on the API
for body, note in [({"full_name": 5}, "name number"), ({"email": "nope"}, "bad email"), ({"phone": "call me"}, "bad phone"), ({"phone": "+86 12"}, "short phone"),
                   ({"full_name": "a\u0000", "email": "bad\u0000"}, "NUL with bad email"), ({"website": "javascript:alert(1)", "full_name": "X"}, "javascript website"),
                   ({"website": "data:text/html,x", "full_name": "X"}, "data website"), ({"full_name": "x" * 5000}, "name too long"),
                   ({"full_name": ["x"]}, "name array"), ({}, "empty")]:
    add("POST", "/crm/actions/contacts", "bearer", json.dumps(body), note=note)
add("POST", "/crm/actions/contacts", "bearer", '{"full_name": "A", "full_name": 5}', note="duplicate keys")
for body, note in [({"contact_id": "nope", "title": "x"}, "bad contact uuid"), ({"contact_id": "{uuid}", "title": "x", "value": 1e400}, "overflowing value"),
                   ({"contact_id": "{uuid}", "title": "x", "value_cents": 99999999999999999999999}, "overflowing cents"), ({"title": 5}, "title number"),
                   ({"contact_id": "{uuid}", "title": "x", "currency": "DOLLARS"}, "bad currency"), ({"contact_id": "{uuid}", "title": ""}, "empty title")]:
    add("POST", "/crm/actions/deals", "bearer", json.dumps(body).replace("1e+400", "1e400"), note=note)
for body, note in [({"stage_id": "nope"}, "bad stage uuid"), ({"stage_id": 5}, "stage number"), ({}, "no stage")]:
    add("POST", "/crm/actions/deals/{uuid}/stage", "bearer", json.dumps(body), note=note)
add("POST", "/crm/actions/deals/not-a-uuid/stage", "bearer", json.dumps({"stage_id": "{uuid}"}), note="bad deal uuid")
for body, note in [({"name": "t", "channel": "pigeon", "content": "hi"}, "unknown channel"), ({"name": "t", "channel": "sms", "content": "Hi {{99999999999999999999}}"}, "overflowing placeholder"),
                   ({"name": "t", "channel": "sms", "content": "Hi {{contact.first_name"}, "unclosed placeholder"), ({"name": "t", "channel": "sms", "content": "Hi {{contact.password}}"}, "unknown variable"),
                   ({"name": "t", "channel": "sms", "content": "Hi {{1}}"}, "unmapped position"), ({"name": 5, "channel": "sms", "content": "x"}, "name number"),
                   ({"name": "t", "channel": "sms", "content": "x" * 20000}, "content too long"), ({"name": "t", "channel": "sms", "content": "x", "variables": "a"}, "variables string")]:
    add("POST", "/api/v1/crm/templates", "bearer", json.dumps(body), note=note)
for body, note in [({"name": "s", "filter": {"field": "nope", "op": "eq", "value": 1}}, "unknown field"), ({"name": "s", "filter": "drop table contacts"}, "filter string"),
                   ({"name": "s", "filter": {"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": [{"and": []}]}]}]}]}]}]}]}]}]}]}]}}, "deep filter"),
                   ({"name": "s", "filter": {"field": "email", "op": "explode", "value": 1}}, "unknown op"), ({"name": "", "filter": {}}, "empty name"),
                   ({"name": "s", "filter": {"field": "created_at", "op": "gt", "value": "99999-01-01"}}, "out-of-range date")]:
    add("POST", "/api/v1/crm/segments", "bearer", json.dumps(body), note=note)
for body, note in [({"name": "c", "template_id": "nope", "segment_id": "{uuid}"}, "bad template uuid"), ({"name": "c", "template_id": "{uuid}", "segment_id": "{uuid}"}, "unknown template"),
                   ({"name": 5}, "name number"), ({"name": "c", "template_id": "{uuid}", "segment_id": "{uuid}", "scheduled_at": "tomorrow"}, "bad schedule"),
                   ({"name": "c", "template_id": "{uuid}", "segment_id": "{uuid}", "rate_per_minute": 99999999999999999999}, "overflowing rate")]:
    add("POST", "/api/v1/crm/campaigns", "bearer", json.dumps(body), note=note)
for body, note in [({"enabled": "yes"}, "enabled string"), ({"enabled": None}, "enabled null"), ({}, "empty")]:
    add("PUT", "/api/v1/crm/module", "bearer", json.dumps(body), note=note)
    add("PATCH", "/api/v1/crm/channels/email", "bearer", json.dumps(body), note=note)
add("PATCH", "/api/v1/crm/channels/pigeon", "bearer", json.dumps({"enabled": True}), note="unknown channel")
for body, note in [({"contact_id": "nope", "body": "hi"}, "bad contact uuid"), ({"contact_id": "{uuid}", "body": 5}, "body number"),
                   ({"contact_id": "{uuid}", "body": "x" * 5000, "channel": "sms"}, "body too long"), ({"contact_id": "{uuid}", "channel": "pigeon", "body": "x"}, "unknown channel"),
                   ({"contact_id": "{contact}", "body": "\u0000"}, "NUL-only body")]:
    add("POST", "/api/messages", "bearer", json.dumps(body), note=note)
for body, note in [({"contact_id": "{uuid}", "template_id": "nope"}, "bad template uuid"), ({"contact_id": "{uuid}", "template_id": "{uuid}", "parameters": "x"}, "parameters string"),
                   ({"contact_id": "{uuid}", "template_id": "{uuid}", "parameters": [1, 2]}, "parameter numbers")]:
    add("POST", "/api/messages/template", "bearer", json.dumps(body), note=note)
for body, note in [({"content_type": "application/x-msdownload", "size": 10}, "forbidden type"), ({"content_type": "image/jpeg", "size": -1}, "negative size"),
                   ({"content_type": "image/jpeg", "size": 99999999999999999999999}, "overflowing size"), ({"content_type": "image/jpeg", "size": 999999999}, "too big")]:
    add("POST", "/api/media/upload-url", "bearer", json.dumps(body), note=note)
for body, note in [({"status": "exploded"}, "unknown status"), ({"read": "yes"}, "read string")]:
    add("PATCH", "/api/messages/{uuid}", "bearer", json.dumps(body), note=note)

# Query strings: cursors, limits, uuids, enums
def cur(tag, micros, n=3):
    raw = f"{tag}|{micros}|{'0'*32}" + (f"|{'0'*32}" if n == 4 else "")
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
far = [-8210298412800000000, 8210298412800000000, -9223372036854775808, 9223372036854775807]
# Every route that pages with a cursor (lists without one ignore `cursor`).
cursor_routes = [("/crm/contacts", "c1", 3), ("/api/contacts/{contact}/messages", "m1", 3), ("/crm/deals", "d2", 4),
                 ("/api/v1/crm/segments/{segment}/preview", "sp", 3), ("/api/v1/crm/campaigns", "cp", 3), ("/api/v1/crm/audit", "au", 3),
                 ("/api/v1/crm/campaigns/{uuid}/deliveries", "dl", 3)]
for path, tag, n in cursor_routes:
    for m in far:
        add("GET", f"{path}?cursor={cur(tag, m, n)}", "bearer", None, ct=None, note=f"out-of-range cursor {tag}")
    for c in ["!!!", "AAAA", base64.urlsafe_b64encode(b"\xff\xfe").decode(), cur("zz", 0, n), "AA%00AA", "x" * 5000]:
        add("GET", f"{path}?cursor={c}", "bearer", None, ct=None, note=f"bad cursor {tag}")
    add("GET", f"{path}?limit=abc", "bearer", None, ct=None, note="limit word")
    add("GET", f"{path}?limit=99999999999999999999", "bearer", None, ct=None, note="limit overflow")
    add("GET", f"{path}?limit=-1", "bearer", None, ct=None, note="negative limit")
for q in ["stage_id=nope", "pipeline_id=nope"]:
    add("GET", f"/crm/deals?{q}", "bearer", None, ct=None, note=f"bad query {q[:12]}")
for m, p in [("POST", "/api/templates/sync-missing")]:
    add(m, p, "none", None, ct=None, note="no token")
    add(m, p, "none", None, ct=None, headers={"authorization": "Bearer not.a.jwt"}, note="malformed token")
for p in ["/crm/contacts/not-a-uuid", "/api/contacts/not-a-uuid/messages", "/api/v1/crm/campaigns/not-a-uuid", "/api/v1/crm/templates/%00",
          "/api/v1/crm/segments/..", "/api/v1/crm/campaigns/{uuid}/deliveries?status=exploded", "/api/v1/crm/campaigns?status=exploded",
          "/api/debug/messages?phone=call+me", "/api/debug/messages",
          "/api/debug/webhook-diagnostics?hours=abc", "/api/debug/webhook-diagnostics?hours=99999999999999999999"]:
    add("GET", p, "bearer", None, ct=None, note="bad path or query")

# Routes added with ownership, pipelines, C2S reads and diagnostics.
new_body = [("POST", "/crm/actions/pipelines"), ("POST", "/crm/actions/pipelines/{uuid}"), ("POST", "/crm/actions/pipelines/{uuid}/stages"),
            ("POST", "/crm/actions/pipelines/{uuid}/reorder"), ("POST", "/crm/actions/pipelines/{uuid}/stages/{uuid}"),
            ("POST", "/crm/actions/pipelines/{uuid}/stages/{uuid}/remove"), ("POST", "/crm/actions/contacts/{uuid}/assign"),
            ("POST", "/crm/actions/contacts/{uuid}/claim"), ("PUT", "/api/v1/lead-routing/instantly"),
            ("POST", "/api/v1/c2s/managers"), ("PATCH", "/api/v1/c2s/managers/{uuid}")]
for m, p in new_body:
    add(m, p, "none", "{}", note="no token")
    add(m, p, "none", "{}", headers={"authorization": "Bearer not.a.jwt"}, note="malformed token")
    add(m, p, "bearer", "{", note="truncated JSON")
    add(m, p, "bearer", None, b64=b'{"name": "\xff"}', note="invalid UTF-8")
    add(m, p, "bearer", json.dumps({"name": BIG}), note="huge body (413)")
for p in ["/crm/pipelines/{uuid}", "/crm/contacts/{uuid}/c2s", "/api/v1/lead-routing", "/api/v1/c2s/leads", "/api/v1/c2s/leads/{uuid}",
          "/api/v1/c2s/managers", "/api/v1/c2s/managers/{uuid}", "/api/v1/admin/webhook-events", "/api/v1/admin/webhook-events/summary"]:
    add("GET", p, "none", None, ct=None, note="no token")
    add("GET", p, "none", None, ct=None, headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, note="alg none token")
add("DELETE", "/api/v1/c2s/managers/{uuid}", "none", None, ct=None, note="no token")
for q in ["cursor=!!!", "cursor=AAAA", "limit=abc", "limit=99999999999999999999"]:
    add("GET", f"/api/v1/c2s/leads?{q}", "bearer", None, ct=None, note="bad query")
    add("GET", f"/api/v1/admin/webhook-events?{q}", "bearer", None, ct=None, note="bad query")

# Routes added with accounts (sign-in, users) and the console API (inbox, media, timeline).
for p in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/auth/set-password"]:
    add("POST", p, "none", "{", note="truncated JSON")
    add("POST", p, "none", None, b64=b'{"email": "\xff"}', note="invalid UTF-8")
    add("POST", p, "none", json.dumps({"password": BIG}), note="huge body (413)")
    add("POST", p, "none", '{"email": "a@b.com"}', ct="text/plain", note="wrong content type")
add("POST", "/api/v1/auth/login", "none", json.dumps([1, 2]), note="array body")
add("POST", "/api/v1/auth/set-password", "none", '{"token": 5, "token": "x"}', note="duplicate keys, wrong type")
for m, p in [("POST", "/api/v1/me/password"), ("POST", "/api/v1/users"), ("PATCH", "/api/v1/users/{uuid}"),
             ("POST", "/api/v1/users/{uuid}/sign-out-everywhere"), ("POST", "/api/v1/users/{uuid}/password-link"),
             ("POST", "/api/conversations/{uuid}/read")]:
    add(m, p, "none", "{}", note="no token")
    add(m, p, "none", "{}", headers={"authorization": "Bearer not.a.jwt"}, note="malformed token")
for m, p in [("POST", "/api/v1/users"), ("PATCH", "/api/v1/users/{uuid}")]:
    add(m, p, "bearer", "{", note="truncated JSON")
    add(m, p, "bearer", json.dumps({"name": BIG}), note="huge body (413)")
    add(m, p, "bearer", json.dumps({"email": "a@b.com", "name": "A", "role": "owner", "caps": []}), note="unknown role")
for p in ["/api/v1/me", "/api/v1/users", "/api/conversations", "/crm/contacts/{uuid}/timeline", "/api/messages/{uuid}/media/0"]:
    add("GET", p, "none", None, ct=None, note="no token")
    add("GET", p, "none", None, ct=None, headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, note="alg none token")
for q in ["cursor=!!!", "cursor=AAAA", "limit=abc"]:
    add("GET", f"/api/conversations?{q}", "bearer", None, ct=None, note="bad query")
    add("GET", f"/crm/contacts/{{contact}}/timeline?{q}", "bearer", None, ct=None, note="bad query")
add("GET", "/api/conversations?channel=fax", "bearer", None, ct=None, note="unknown channel")
add("GET", "/crm/contacts/{contact}/timeline?type=exploded", "bearer", None, ct=None, note="unknown activity type")
add("GET", "/api/messages/{uuid}/media/abc", "bearer", None, ct=None, note="bad media index")

# Unsubscribe: bad tokens (400 HTML pages)
for t in ["", "x", "a.b", "%00", "x" * 5000, base64.urlsafe_b64encode(b'{"c":"x"}').decode() + ".AAAA"]:
    add("GET", f"/api/v1/crm/unsubscribe?token={t}", "none", None, ct=None, note="bad unsubscribe token")
    add("POST", f"/api/v1/crm/unsubscribe?token={t}", "none", "List-Unsubscribe=One-Click", ct=F, note="bad one-click token")

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "bad-input.jsonl"), "w") as f:
    for e in out:
        f.write(json.dumps(e, ensure_ascii=True) + "\n")
print(len(out), "requests")
