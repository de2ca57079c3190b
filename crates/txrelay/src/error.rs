//! Error types (style.md 2.3). Errors that drive retries say so in their type:
//! [`NodeError::retryable`] and [`NodeError::origin`] decide between "try another node / try
//! later" and "this transaction can never be sent", and [`RejectReason`] is the
//! machine-readable answer to a submission that fails validation.

use std::time::Duration;

use alloy::primitives::Address;

/// `Result` with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure of the relay as a whole (start-up, serving, a fatal store error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; fix the named key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node failed in a way start-up cannot continue from.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Binding or serving the HTTP API failed.
    #[error("serving the API failed")]
    Serve(#[from] svckit::ServeError),
    /// Binding the listen address failed (in use, or not a local address).
    #[error("binding `{addr}` failed")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configured node reports another chain id than its `[[chains]]` entry says.
    #[error("node `{url}` reports chain id {reported}, configured as {configured}")]
    ChainIdMismatch {
        /// The node URL (redacted).
        url: String,
        /// The configured chain id.
        configured: u64,
        /// What `eth_chainId` answered.
        reported: u64,
    },
}

/// A configuration value is invalid. Raised right after loading; the relay does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Loading the layers failed (unreadable file, bad TOML, unknown key, wrong type).
    #[error(transparent)]
    Load(#[from] svckit::config::ConfigError),
    /// No `[[chains]]` entry: the relay would have nothing to relay to.
    #[error("no chains configured; add a `[[chains]]` entry with `chain_id` and `rpc_urls`")]
    NoChains,
    /// A chain entry has `chain_id = 0` (missing).
    #[error("a `[[chains]]` entry has no `chain_id`")]
    ZeroChainId,
    /// Two `[[chains]]` entries share a chain id.
    #[error("chain id {chain_id} is configured twice")]
    DuplicateChain {
        /// The repeated id.
        chain_id: u64,
    },
    /// A chain has an empty `rpc_urls`.
    #[error("chain {chain_id} has no `rpc_urls`")]
    NoRpcUrl {
        /// The chain.
        chain_id: u64,
    },
    /// A node URL does not parse or is not http(s).
    #[error("chain {chain_id}: node URL `{url}` is invalid: {reason}")]
    BadRpcUrl {
        /// The chain.
        chain_id: u64,
        /// The URL as given (redacted when it parsed).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `database.url` does not parse or names an unsupported database.
    #[error("`database.url` `{url}` is invalid: {reason}")]
    BadDatabaseUrl {
        /// The URL as given (redacted when it parsed).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `instance_id` is empty.
    #[error("`instance_id` must not be empty")]
    EmptyInstanceId,
    /// An entry of `accounts.allow` or `accounts.deny` is not a 20-byte hex address.
    #[error("`{list}` entry `{value}` is not an account address")]
    BadAccount {
        /// The list key.
        list: &'static str,
        /// The entry.
        value: String,
    },
    /// An entry of `outbound.allow` or `outbound.deny` is not a network (`10.0.0.0/8`) or an
    /// address.
    #[error("`{list}` entry `{value}` is not a CIDR network or IP address")]
    BadNetwork {
        /// The list key.
        list: &'static str,
        /// The entry.
        value: String,
    },
    /// `secrets.key` (or an entry of `secrets.previous_keys`) is missing or not 32 bytes of
    /// hex.
    #[error(
        "`secrets.key` {0}; generate one with `openssl rand -hex 32` and set TXRELAY_SECRETS__KEY"
    )]
    SecretsKey(&'static str),
    /// `auth.domain` is empty or has spaces.
    #[error("`auth.domain` `{0}` is not a host name")]
    BadDomain(String),
    /// A numeric value is outside its documented range.
    #[error("`{key}` = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The dotted key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
}

/// Where a [`NodeError`] arose (pingora's `ErrorSource`, style.md 2.3 item 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The network or the node's HTTP layer: no answer, a timeout, a non-2xx status.
    Transport,
    /// The node answered with a JSON-RPC error about the request.
    Node,
    /// The node's answer did not have the expected shape.
    Protocol,
}

/// What a JSON-RPC error from a node means for the transaction, classified from the node's
/// message (texts observed on anvil/geth, see `tests/data/node-errors.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcErrorKind {
    /// `nonce too low`: the account's nonce has moved past this transaction (it was mined,
    /// or another transaction used the nonce). Sending the same bytes again cannot succeed.
    NonceTooLow,
    /// `already known` / `transaction already imported`: the node holds it; counts as sent.
    AlreadyKnown,
    /// `replacement transaction underpriced`: another pending transaction holds the nonce.
    Underpriced,
    /// `insufficient funds`: the sender cannot pay; permanent for these bytes.
    InsufficientFunds,
    /// `invalid chain id`: the node belongs to another chain.
    WrongChain,
    /// The node could not decode the transaction.
    Undecodable,
    /// The node is busy or failed internally (JSON-RPC -32603, -32005 limit exceeded):
    /// worth retrying, perhaps elsewhere.
    Busy,
    /// Any other error the node reported.
    Other,
}

impl RpcErrorKind {
    /// Classifies a JSON-RPC error by its code and message.
    pub fn classify(code: i64, message: &str) -> Self {
        let text = message.to_ascii_lowercase();
        if text.contains("nonce too low") {
            Self::NonceTooLow
        } else if text.contains("already known") || text.contains("already imported") {
            Self::AlreadyKnown
        } else if text.contains("underpriced") {
            Self::Underpriced
        } else if text.contains("insufficient funds") {
            Self::InsufficientFunds
        } else if text.contains("chain id") || text.contains("chainid") {
            Self::WrongChain
        } else if text.contains("decode") || code == -32602 {
            Self::Undecodable
        } else if code == -32603 || code == -32005 || text.contains("rate limit") {
            Self::Busy
        } else {
            Self::Other
        }
    }
}

/// A JSON-RPC call to a node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node could not be reached or the connection broke (refused, reset).
    #[error("node `{url}` unreachable")]
    Unreachable {
        /// The node URL (redacted).
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The node did not answer within the RPC timeout.
    #[error("node `{url}` did not answer within {after:?}")]
    Timeout {
        /// The node URL (redacted).
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The node answered with a non-2xx HTTP status.
    #[error("node `{url}` answered HTTP {status}")]
    HttpStatus {
        /// The node URL (redacted).
        url: String,
        /// The status code.
        status: u16,
    },
    /// The answer is not the JSON-RPC shape expected for the method.
    #[error("node `{url}` sent an unexpected answer to `{method}`: {detail}")]
    BadResponse {
        /// The node URL (redacted).
        url: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("node `{url}` refused `{method}`: {message} (code {code})")]
    Rpc {
        /// The node URL (redacted).
        url: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
        /// What it means for the transaction.
        kind: RpcErrorKind,
    },
    /// Every node URL of the chain failed with a transport error; the last one is attached.
    #[error("all {tried} node(s) of chain {chain_id} failed")]
    AllFailed {
        /// The chain.
        chain_id: u64,
        /// How many URLs were tried.
        tried: usize,
        /// The last failure.
        #[source]
        last: Box<Self>,
    },
}

impl NodeError {
    /// Where the error arose.
    pub fn origin(&self) -> Origin {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::HttpStatus { .. } => {
                Origin::Transport
            }
            Self::BadResponse { .. } => Origin::Protocol,
            Self::Rpc { .. } => Origin::Node,
            Self::AllFailed { last, .. } => last.origin(),
        }
    }

    /// True when the same request may succeed later or on another node (transport
    /// failures, a busy node, a malformed answer); false when the node gave a definite
    /// answer about the request.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::HttpStatus { .. }
            | Self::BadResponse { .. }
            | Self::AllFailed { .. } => true,
            Self::Rpc { kind, .. } => matches!(kind, RpcErrorKind::Busy),
        }
    }

    /// True when the request ran out of its timeout (on the last node tried, for
    /// [`Self::AllFailed`]): the answer may just be too large or the node too slow for it.
    pub fn timed_out(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::AllFailed { last, .. } => last.timed_out(),
            _ => false,
        }
    }

    /// True when another node URL should be tried for this request (failover).
    pub fn fails_over(&self) -> bool {
        self.origin() == Origin::Transport
            || matches!(
                self,
                Self::Rpc {
                    kind: RpcErrorKind::Busy,
                    ..
                } | Self::BadResponse { .. }
            )
    }

    /// The classified JSON-RPC error kind, if the node answered with one.
    pub fn rpc_kind(&self) -> Option<RpcErrorKind> {
        match self {
            Self::Rpc { kind, .. } => Some(*kind),
            Self::AllFailed { last, .. } => last.rpc_kind(),
            _ => None,
        }
    }
}

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Opening the database failed (file not creatable, server unreachable, bad credentials).
    #[error("connecting to `{url}` failed")]
    Connect {
        /// The database URL (redacted).
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite file could not be created or its mode set.
    #[error("preparing the database file `{path}` failed")]
    File {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Applying the schema migrations failed.
    #[error("migrating the database schema failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("database operation `{op}` failed")]
    Query {
        /// Which operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not decode (a row written by another program or version).
    #[error("stored {what} `{value}` is invalid")]
    Corrupt {
        /// What kind of value.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// Why a submitted transaction was refused before anything was sent (seed ¶28-29). The
/// API answers 4xx with `{"error": {"reason": code, "message": text}}`; see
/// [`RejectReason::code`] and [`RejectReason::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The request body is not the documented JSON.
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// `raw` is not 0x-prefixed hex.
    #[error("`raw` is not 0x-prefixed hex")]
    MalformedHex,
    /// `raw` is not an EIP-2718 transaction envelope (type byte + RLP).
    #[error("`raw` is not a decodable EIP-2718 transaction: {detail}")]
    Undecodable {
        /// The decoder's complaint.
        detail: String,
    },
    /// The transaction type is not relayed (EIP-4844 blob transactions need a sidecar).
    #[error("transaction type {ty} is not relayed")]
    UnsupportedType {
        /// The EIP-2718 type byte.
        ty: u8,
    },
    /// A legacy transaction without EIP-155 chain id: it could be replayed on any chain.
    #[error("the transaction has no chain id (pre-EIP-155)")]
    MissingChainId,
    /// The chain in the path is not configured.
    #[error("chain {chain_id} is not served by this relay")]
    UnknownChain {
        /// The chain id from the path.
        chain_id: u64,
    },
    /// The transaction's chain id differs from the chain in the path.
    #[error("the transaction is for chain {tx_chain_id}, the request for chain {path_chain_id}")]
    ChainMismatch {
        /// From the transaction.
        tx_chain_id: u64,
        /// From the path.
        path_chain_id: u64,
    },
    /// A field is out of range (gas limit below 21 000, priority fee above max fee, ...).
    #[error("field `{field}` is invalid: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No signer can be recovered from the signature (invalid or high-s, EIP-2).
    #[error("the signature is invalid")]
    InvalidSignature,
    /// The recovered signer is not the declared `sender`.
    #[error("the transaction is signed by `{recovered}`, not the declared sender `{declared}`")]
    SenderMismatch {
        /// `sender` from the request.
        declared: Address,
        /// Recovered from the signature.
        recovered: Address,
    },
    /// The sender is on the deny list.
    #[error("account `{account}` is denied")]
    AccountDenied {
        /// The sender.
        account: Address,
    },
    /// The sender is neither allowed nor registered by a device.
    #[error("account `{account}` is not allowed or registered")]
    AccountUnknown {
        /// The sender.
        account: Address,
    },
    /// The nonce is below the account's current nonce on the chain.
    #[error("nonce {nonce} is below the account's current nonce {current}")]
    NonceTooLow {
        /// The transaction's nonce.
        nonce: u64,
        /// `eth_getTransactionCount(sender, "latest")`.
        current: u64,
    },
}

impl RejectReason {
    /// The stable machine-readable code (snake case) sent as `error.reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::MalformedHex => "malformed_hex",
            Self::Undecodable { .. } => "undecodable_transaction",
            Self::UnsupportedType { .. } => "unsupported_type",
            Self::MissingChainId => "missing_chain_id",
            Self::UnknownChain { .. } => "unknown_chain",
            Self::ChainMismatch { .. } => "chain_mismatch",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidSignature => "invalid_signature",
            Self::SenderMismatch { .. } => "sender_mismatch",
            Self::AccountDenied { .. } => "account_denied",
            Self::AccountUnknown { .. } => "account_unknown",
            Self::NonceTooLow { .. } => "nonce_too_low",
        }
    }

    /// The HTTP status: 400 malformed request or transaction, 404 unknown chain, 403 account
    /// refused, 422 a well-formed transaction that cannot be relayed.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidRequest { .. } | Self::MalformedHex | Self::Undecodable { .. } => 400,
            Self::UnknownChain { .. } => 404,
            Self::AccountDenied { .. } | Self::AccountUnknown { .. } => 403,
            Self::UnsupportedType { .. }
            | Self::MissingChainId
            | Self::ChainMismatch { .. }
            | Self::InvalidField { .. }
            | Self::InvalidSignature
            | Self::SenderMismatch { .. }
            | Self::NonceTooLow { .. } => 422,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_messages_are_classified() {
        for (code, message, kind) in [
            (-32003, "nonce too low", RpcErrorKind::NonceTooLow),
            (
                -32003,
                "transaction already imported",
                RpcErrorKind::AlreadyKnown,
            ),
            (-32000, "already known", RpcErrorKind::AlreadyKnown),
            (
                -32003,
                "replacement transaction underpriced",
                RpcErrorKind::Underpriced,
            ),
            (
                -32003,
                "Insufficient funds for gas * price + value",
                RpcErrorKind::InsufficientFunds,
            ),
            (
                -32003,
                "invalid chain id for signer",
                RpcErrorKind::WrongChain,
            ),
            (
                -32602,
                "Failed to decode transaction",
                RpcErrorKind::Undecodable,
            ),
            (-32603, "internal error", RpcErrorKind::Busy),
            (3, "execution reverted", RpcErrorKind::Other),
        ] {
            assert_eq!(RpcErrorKind::classify(code, message), kind, "{message}");
        }
    }

    #[test]
    fn retryability_follows_origin() {
        let timeout = NodeError::Timeout {
            url: "http://127.0.0.1:1/".to_owned(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.retryable() && timeout.fails_over());
        assert_eq!(timeout.origin(), Origin::Transport);
        let nonce = NodeError::Rpc {
            url: "http://127.0.0.1:1/".to_owned(),
            method: "eth_sendRawTransaction",
            code: -32003,
            message: "nonce too low".to_owned(),
            kind: RpcErrorKind::NonceTooLow,
        };
        assert!(!nonce.retryable() && !nonce.fails_over());
        assert_eq!(nonce.origin(), Origin::Node);
        let all = NodeError::AllFailed {
            chain_id: 1,
            tried: 2,
            last: Box::new(timeout),
        };
        assert!(all.retryable());
        assert_eq!(all.origin(), Origin::Transport);
    }

    #[test]
    fn reject_codes_are_distinct() {
        let reasons = [
            RejectReason::MalformedHex,
            RejectReason::MissingChainId,
            RejectReason::InvalidSignature,
            RejectReason::UnknownChain { chain_id: 1 },
            RejectReason::AccountUnknown {
                account: Address::ZERO,
            },
            RejectReason::NonceTooLow {
                nonce: 1,
                current: 2,
            },
        ];
        let codes: std::collections::BTreeSet<_> = reasons.iter().map(RejectReason::code).collect();
        assert_eq!(codes.len(), reasons.len());
        assert_eq!(reasons[3].http_status(), 404);
        assert_eq!(reasons[4].http_status(), 403);
    }
}
