#!/usr/bin/env python3
"""Writes crates/txrelay/openapi.json (OpenAPI 3.1) for the relay's API.

Run from anywhere: python3 crates/txrelay/scripts/openapi.py. The unit test
`api::tests::openapi_lists_exactly_the_routes` checks the result against the router.
"""
import json
import pathlib

REF = lambda name: {"$ref": f"#/components/schemas/{name}"}
ERR = {"$ref": "#/components/responses/Error"}
LIMITED = {"$ref": "#/components/responses/RateLimited"}
UNAUTH = {"$ref": "#/components/responses/Unauthorized"}
ADMIN = [{"apiKey": ["admin"]}]

def body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}

def ok(description, schema=None, headers=None):
    answer = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    if headers:
        answer["headers"] = headers
    return answer

def authed(responses, admin=False):
    responses = dict(responses)
    responses.setdefault("401", UNAUTH)
    responses.setdefault("429", LIMITED)
    if admin:
        responses.setdefault("403", ERR)
    responses.setdefault("500", ERR)
    return responses

device = {"$ref": "#/components/parameters/Device"}
hex_string = lambda pattern: {"type": "string", "pattern": pattern}

REASONS = {
    "400": ["invalid_request", "malformed_hex", "undecodable_transaction", "invalid_rules"],
    "401": ["unauthorized"],
    "403": ["account_denied", "account_unknown", "admin_only", "device_not_owned",
            "transaction_not_owned", "too_many_devices", "invalid_proof"],
    "404": ["unknown_chain", "not_found"],
    "409": ["idempotency_key_reused", "idempotency_key_in_progress"],
    "422": ["unsupported_type", "missing_chain_id", "chain_mismatch", "invalid_field",
            "invalid_signature", "sender_mismatch", "nonce_too_low", "receiver_not_allowed"],
    "429": ["rate_limited", "too_many_sockets"],
    "503": ["node_unavailable", "backlog_full"],
    "500": ["internal"],
}
ALL_REASONS = [r for codes in REASONS.values() for r in codes]

receiver = {
    "type": "object", "additionalProperties": False, "required": ["url"],
    "properties": {
        "url": {"type": "string", "format": "uri",
                "description": "http(s)://host[:port]/path without user or password. Checked "
                "after DNS resolution against the outbound policy (loopback, private, "
                "link-local, metadata and the relay's own endpoints are refused unless allowed "
                "by `outbound.allow`), now and at every delivery; redirects are not followed."},
        "secret": {"type": "string",
                   "description": "scheme `standard`: `whsec_` + base64 of 24-64 bytes; omit it "
                   "to have the relay generate one (shown once in the answer). scheme "
                   "`txrelay-v1`: at least 16 bytes, required. Stored encrypted; answered as ***."},
        "scheme": {"type": "string", "enum": ["standard", "txrelay-v1"], "default": "standard",
                   "description": "standard: Standard Webhooks headers webhook-id, "
                   "webhook-timestamp, webhook-signature (v1,base64 HMAC-SHA256 of "
                   "id.timestamp.body). txrelay-v1: X-Txrelay-Event-Id, X-Txrelay-Timestamp, "
                   "X-Txrelay-Signature (v1=hex HMAC-SHA256 of timestamp.body)."},
    },
}

log = {"type": "object", "properties": {
    "address": REF("Address"), "topics": {"type": "array", "items": REF("Hash")},
    "data": {"type": "string"}, "log_index": {"type": "integer"}}}

receipt = {
    "type": "object",
    "description": "The node's receipt (every field but the logs bloom) with the decoded revert reason.",
    "properties": {
        "tx_hash": REF("Hash"), "block_number": {"type": "integer"}, "block_hash": REF("Hash"),
        "transaction_index": {"type": "integer"}, "from": REF("Address"),
        "to": {"oneOf": [REF("Address"), {"type": "null"}]},
        "contract_address": {"oneOf": [REF("Address"), {"type": "null"}]},
        "gas_used": {"type": "integer"}, "cumulative_gas_used": {"type": "integer"},
        "effective_gas_price": {"type": "string", "description": "wei per gas, decimal"},
        "type": {"type": "integer", "description": "EIP-2718 type"},
        "success": {"type": "boolean", "description": "status 1 (EIP-658)"},
        "logs": {"type": "array", "items": log},
        "revert_reason": {"type": ["string", "null"]},
    },
}

event = {
    "type": "object",
    "description": "The body POSTed to webhooks and pushed over the WebSocket. Receivers dedupe on event_id (delivery is at least once).",
    "properties": {
        "event_id": {"type": "string"}, "tx_hash": REF("Hash"), "chain_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["mined", "failed", "reorged", "rejected", "stuck",
                                              "replaced", "expired"]},
        "block_number": {"type": ["integer", "null"]}, "block_hash": {"oneOf": [REF("Hash"), {"type": "null"}]},
        "gas_used": {"type": ["integer", "null"]},
        "receipt": {"oneOf": [REF("Receipt"), {"type": "null"}]},
        "revert_reason": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"], "description": "rejected: why; stuck: nonce_gap or fee_below_base_fee"},
        "replaced_by": {"oneOf": [REF("Hash"), {"type": "null"}]},
        "sender": REF("Address"), "recipient": {"oneOf": [REF("Address"), {"type": "null"}]},
        "nonce": {"type": "integer"}, "confirmations": {"type": "integer"},
        "emitted_at_ms": {"type": "integer"},
    },
}

notification = {"type": "object", "properties": {
    "id": {"type": "integer"}, "event_id": {"type": "string"}, "tx_hash": REF("Hash"),
    "kind": {"type": "string"}, "channel": {"type": "string", "enum": ["webhook", "account"]},
    "target": {"type": "string"}, "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
    "attempts": {"type": "integer"},
    "last_error": {"type": ["string", "null"], "description": "coarse, names no address: no HTTP answer, HTTP <status>, not allowed"},
    "created_at_ms": {"type": "integer"}, "delivered_at_ms": {"type": ["integer", "null"]}}}

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "txrelay",
        "version": "0.2.0",
        "description": (
            "Off-chain transaction relay: validates signed transactions, applies idempotency "
            "control, sends them to any healthy node of the chain, tracks their receipts and "
            "pushes the results to the receivers the sending device registered (signed webhooks, "
            "or a WebSocket for the recipient account).\n\n"
            "Security model: every route except /openapi.json and /readyz needs an API key "
            "(`Authorization: Bearer txr_{key_id}_{secret}`; keys are stored as SHA-256 of the "
            "secret). A key belongs to a tenant; a tenant owns the devices it registered first, "
            "may change and read only those, submit only as them, and read only the transactions "
            "they sent (403 otherwise). Accounts are registered to a device only with an EIP-4361 "
            "(Sign-In with Ethereum) message signed by the account (POST /v1/auth/nonce, then "
            "POST /v1/devices/{device}/accounts); the WebSocket sign-in uses the same message "
            "format. Admin keys (scope `admin`) may use the dead-letter and key endpoints and read "
            "everything. Each key has a token-bucket rate limit (429 with Retry-After), a limit of "
            "open WebSocket sessions, and each device a limit of receivers. /healthz and /metrics "
            "are served on the separate operations listener (`ops_listen`), not here."),
    },
    "security": [{"apiKey": []}],
    "paths": {
        "/v1/chains/{chain_id}/transactions": {"post": {
            "summary": "Submit a signed transaction as one of the tenant's devices",
            "description": (
                "Checks the key, the device (owned by the key's tenant), the envelope, chain id, "
                "signature == sender, the account policy and the cached account nonce; then "
                "records it and queues it for broadcast (no node is asked in the request path: "
                "submissions are queued while nodes are down). A transaction already in a block "
                "answers 200 with its status and receipt. With idempotent=true an identical "
                "transaction received within the window is not sent again. With an "
                "Idempotency-Key header the first answer is replayed for the same body (header "
                "Idempotent-Replayed: true) and another body with the key answers 409. A 4xx "
                "answer means nothing was sent."),
            "parameters": [
                {"name": "chain_id", "in": "path", "required": True, "schema": {"type": "integer", "format": "uint64"}},
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
            ],
            "requestBody": body(REF("SubmitRequest")),
            "responses": authed({
                "200": ok("Already in a block: status and receipt", REF("SubmitResponse")),
                "202": ok("Accepted and queued, or in flight already (duplicate)", REF("SubmitResponse")),
                "400": ERR, "403": ERR, "404": ERR, "409": ERR, "422": ERR, "503": ERR}),
        }},
        "/v1/transactions/{hash}": {"get": {
            "summary": "A transaction of the tenant's devices: status, receipt, devices, notifications",
            "parameters": [{"name": "hash", "in": "path", "required": True, "schema": REF("Hash")}],
            "responses": authed({"200": ok("The transaction", REF("Transaction")), "400": ERR, "403": ERR, "404": ERR}),
        }},
        "/v1/devices/{device}/notifications": {
            "put": {
                "summary": "Register a device (first come, first owned) or replace its rules",
                "parameters": [device],
                "requestBody": body(REF("Registration")),
                "responses": authed({"200": ok("The stored rules (generated secrets shown once)", REF("DeviceView")),
                                     "400": ERR, "403": ERR, "422": ERR}),
            },
            "get": {
                "summary": "Read a device's rules and accounts (secrets masked)",
                "parameters": [device],
                "responses": authed({"200": ok("The rules", REF("DeviceView")), "403": ERR, "404": ERR}),
            },
        },
        "/v1/auth/nonce": {"post": {
            "summary": "A single-use EIP-4361 nonce with the domain and URI to sign for",
            "responses": authed({"201": ok("The nonce", REF("NonceAnswer"))}),
        }},
        "/v1/devices/{device}/accounts": {"post": {
            "summary": "Register the signing account to the device with an EIP-4361 proof",
            "description": "The message must name the relay's domain, a served chain id, a nonce from POST /v1/auth/nonce (single use) and an expiration time; the EIP-191 signature must recover to the message's address.",
            "parameters": [device],
            "requestBody": body(REF("AccountProof")),
            "responses": authed({"201": ok("Registered"), "400": ERR, "403": ERR}),
        }},
        "/v1/devices/{device}/accounts/{account}": {"delete": {
            "summary": "Remove an account from the device",
            "parameters": [device, {"name": "account", "in": "path", "required": True, "schema": REF("Address")}],
            "responses": authed({"204": ok("Removed"), "403": ERR, "404": ERR}),
        }},
        "/v1/ws": {"get": {
            "summary": "WebSocket: results for the recipient account after an EIP-4361 sign-in",
            "description": "Server: {type: challenge, nonce, domain, uri}; client: {type: login, message, signature} with an EIP-4361 message for the account carrying that nonce; server: welcome, then {type: event, event}; client: {type: ack, event_id}. At most limits.max_sockets_per_key sessions per key (429 too_many_sockets).",
            "responses": authed({"101": ok("Switching protocols")}),
        }},
        "/v1/dead-letters": {"get": {
            "summary": "Notifications that ran out of retry time or attempts (admin)",
            "security": ADMIN,
            "responses": authed({"200": ok("Dead letters", {"type": "array", "items": REF("Notification")})}, admin=True),
        }},
        "/v1/dead-letters/{id}/replay": {"post": {
            "summary": "Queue one dead letter again (admin)",
            "security": ADMIN,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": authed({"200": ok("Replayed", REF("Replayed")), "404": ERR}, admin=True),
        }},
        "/v1/dead-letters/replay": {"post": {
            "summary": "Queue every dead letter again (admin)",
            "security": ADMIN,
            "responses": authed({"200": ok("Replayed", REF("Replayed"))}, admin=True),
        }},
        "/v1/keys": {
            "post": {
                "summary": "Create an API key (admin); the token is shown once",
                "security": ADMIN,
                "requestBody": body(REF("NewKeyRequest")),
                "responses": authed({"201": ok("The key and its token", REF("ApiKey")), "400": ERR}, admin=True),
            },
            "get": {
                "summary": "List API keys without secrets (admin)",
                "security": ADMIN,
                "responses": authed({"200": ok("Keys", {"type": "array", "items": REF("ApiKey")})}, admin=True),
            },
        },
        "/v1/keys/{key_id}": {"delete": {
            "summary": "Revoke an API key (admin; other instances notice within auth.key_cache_seconds)",
            "security": ADMIN,
            "parameters": [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": authed({"204": ok("Revoked"), "404": ERR}, admin=True),
        }},
        "/readyz": {"get": {
            "summary": "Readiness: the database and a node of every chain answer",
            "security": [],
            "responses": {"200": ok("Ready", REF("Readiness")), "503": ok("Not ready", REF("Readiness"))},
        }},
        "/openapi.json": {"get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": ok("OpenAPI 3.1")},
        }},
    },
    "components": {
        "securitySchemes": {
            "apiKey": {
                "type": "http", "scheme": "bearer", "bearerFormat": "txr_{key_id}_{secret}",
                "description": "An API key from `txrelay keys create` or POST /v1/keys. Scopes in `security` entries: `admin` for admin-only endpoints.",
            },
        },
        "parameters": {"Device": {"name": "device", "in": "path", "required": True,
                                  "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}},
        "responses": {
            "Error": {"description": "Machine-readable error", "content": {"application/json": {"schema": REF("Error")}}},
            "Unauthorized": {"description": "No valid API key (WWW-Authenticate: Bearer)",
                             "content": {"application/json": {"schema": REF("Error")}}},
            "RateLimited": {"description": "Over the key's rate (or too many sockets)",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                            "content": {"application/json": {"schema": REF("Error")}}},
        },
        "schemas": {
            "Hash": hex_string("^0x[0-9a-fA-F]{64}$"),
            "Address": hex_string("^0x[0-9a-fA-F]{40}$"),
            "SubmitRequest": {"type": "object", "additionalProperties": False, "required": ["raw", "sender", "device"],
                              "properties": {"raw": {"type": "string", "description": "Signed EIP-2718 transaction, 0x-hex (blob transactions: unsupported_type)"},
                                             "sender": REF("Address"),
                                             "device": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                                             "idempotent": {"type": "boolean", "default": False}}},
            "SubmitResponse": {"type": "object", "required": ["tx_hash", "duplicate", "status"],
                               "properties": {"tx_hash": REF("Hash"), "duplicate": {"type": "boolean"},
                                              "status": {"type": "string"}, "receipt": REF("Receipt")}},
            "Receipt": receipt,
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["reason", "message", "retryable"],
                "properties": {
                    "reason": {"type": "string", "enum": ALL_REASONS,
                               "description": "; ".join(f"{status}: {', '.join(codes)}" for status, codes in REASONS.items())},
                    "message": {"type": "string"}, "retryable": {"type": "boolean"}}}}},
            "Receiver": receiver,
            "RecipientRule": {"type": "object", "additionalProperties": False, "required": ["account", "receiver"],
                              "properties": {"account": REF("Address"), "receiver": REF("Receiver")}},
            "Registration": {"type": "object", "additionalProperties": False,
                             "description": "At most limits.max_receivers_per_device receivers in all.",
                             "properties": {"fixed": {"type": "array", "items": REF("Receiver")},
                                            "by_recipient": {"type": "array", "items": REF("RecipientRule")},
                                            "to_recipient_account": {"type": "boolean", "default": False}}},
            "DeviceView": {"type": "object", "properties": {
                "device": {"type": "string"}, "fixed": {"type": "array", "items": REF("Receiver")},
                "by_recipient": {"type": "array", "items": REF("RecipientRule")},
                "to_recipient_account": {"type": "boolean"},
                "accounts": {"type": "array", "items": REF("Address")}}},
            "NonceAnswer": {"type": "object", "properties": {
                "nonce": {"type": "string"}, "domain": {"type": "string"}, "uri": {"type": "string"},
                "expires_at_ms": {"type": "integer"}}},
            "AccountProof": {"type": "object", "additionalProperties": False, "required": ["message", "signature"],
                             "properties": {"message": {"type": "string", "description": "EIP-4361 text"},
                                            "signature": {"type": "string", "description": "EIP-191 signature, 0x-hex of 65 bytes"}}},
            "Event": event,
            "Notification": notification,
            "Transaction": {"type": "object", "properties": {
                "tx_hash": REF("Hash"), "chain_id": {"type": "integer"}, "sender": REF("Address"),
                "recipient": {"oneOf": [REF("Address"), {"type": "null"}]}, "nonce": {"type": "integer"},
                "status": {"type": "string", "enum": ["queued", "pending", "included", "mined", "failed",
                                                      "rejected", "replaced", "expired"]},
                "finalized": {"type": "boolean"}, "accepted_at_ms": {"type": "integer"},
                "broadcast_count": {"type": "integer"}, "reorgs": {"type": "integer"},
                "error": {"type": ["string", "null"]}, "replaced_by": {"oneOf": [REF("Hash"), {"type": "null"}]},
                "receipt": {"oneOf": [REF("Receipt"), {"type": "null"}]},
                "devices": {"type": "array", "items": {"type": "string"}},
                "notifications": {"type": "array", "items": REF("Notification")}}},
            "Replayed": {"type": "object", "properties": {"replayed": {"type": "integer"}}},
            "NewKeyRequest": {"type": "object", "additionalProperties": False, "required": ["tenant"],
                              "properties": {"tenant": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                                             "admin": {"type": "boolean", "default": False},
                                             "rate_per_second": {"type": "integer"}, "burst": {"type": "integer"},
                                             "label": {"type": "string"}}},
            "ApiKey": {"type": "object", "properties": {
                "key_id": {"type": "string"}, "tenant": {"type": "string"}, "admin": {"type": "boolean"},
                "rate_per_second": {"type": ["integer", "null"]}, "burst": {"type": ["integer", "null"]},
                "label": {"type": ["string", "null"]}, "created_at_ms": {"type": "integer"},
                "revoked_at_ms": {"type": ["integer", "null"]},
                "token": {"type": "string", "description": "only in the answer to POST /v1/keys"}}},
            "Readiness": {"type": "object", "properties": {
                "ready": {"type": "boolean"}, "database": {"type": "string", "enum": ["ok", "failed"]},
                "chains": {"type": "object", "additionalProperties": {"type": "string", "enum": ["ok", "no_node"]}}}},
        },
    },
}

out = pathlib.Path(__file__).resolve().parent.parent / "openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
