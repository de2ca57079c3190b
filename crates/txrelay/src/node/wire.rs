//! The JSON-RPC envelope: single and batch answers matched to their requests, node errors
//! classified, transport failures told apart from timeouts.

use std::time::Duration;

use serde_json::Value;

use crate::error::{NodeError, RpcErrorKind};

use super::BatchItem;

pub(super) fn transport_error(url: &str, timeout: Duration, source: reqwest::Error) -> NodeError {
    if source.is_timeout() {
        NodeError::Timeout {
            url: url.to_owned(),
            after: timeout,
        }
    } else {
        NodeError::Unreachable {
            url: url.to_owned(),
            source,
        }
    }
}

pub(super) fn rpc_error(url: &str, method: &'static str, error: &Value) -> NodeError {
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    NodeError::Rpc {
        url: url.to_owned(),
        method,
        code,
        kind: RpcErrorKind::classify(code, &message),
        message,
    }
}

pub(super) fn single_result(
    url: &str,
    method: &'static str,
    mut value: Value,
) -> Result<Value, NodeError> {
    if let Some(error) = value.get("error") {
        return Err(rpc_error(url, method, error));
    }
    match value.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(NodeError::BadResponse {
            url: url.to_owned(),
            method,
            detail: "neither `result` nor `error`".to_owned(),
        }),
    }
}

pub(super) fn batch_results(
    url: &str,
    method: &'static str,
    count: usize,
    value: Value,
) -> Result<Vec<BatchItem>, NodeError> {
    let Value::Array(entries) = value else {
        // A node that rejects the whole batch answers one error object.
        return match value.get("error") {
            Some(error) => Err(rpc_error(url, method, error)),
            None => Err(NodeError::BadResponse {
                url: url.to_owned(),
                method,
                detail: "a batch answer must be an array".to_owned(),
            }),
        };
    };
    let mut slots: Vec<Option<BatchItem>> = (0..count).map(|_| None).collect();
    for entry in entries {
        let id = entry
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| usize::try_from(id).ok());
        if let Some(slot) = id.and_then(|id| slots.get_mut(id)) {
            *slot = Some(single_result(url, method, entry));
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(id, slot)| {
            slot.ok_or_else(|| NodeError::BadResponse {
                url: url.to_owned(),
                method,
                detail: format!("batch answer lacks id {id}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn batch_answers_are_matched_by_id() {
        let answer = json!([
            {"jsonrpc": "2.0", "id": 1, "result": null},
            {"jsonrpc": "2.0", "id": 0, "result": "0x1"},
            {"jsonrpc": "2.0", "id": 2, "error": {"code": -32003, "message": "nonce too low"}},
        ]);
        let items = batch_results("u", "m", 3, answer).unwrap();
        assert_eq!(items[0].as_ref().unwrap(), &json!("0x1"));
        assert!(items[1].as_ref().unwrap().is_null());
        assert_eq!(
            items[2].as_ref().unwrap_err().rpc_kind(),
            Some(RpcErrorKind::NonceTooLow)
        );
        assert!(batch_results("u", "m", 2, json!([{"id": 0, "result": 1}])).is_err());
    }
}
