//! The request handlers: what one framed request means for the ledger, and the JSON answer.
//!
//! With [`crate::ledger`], this is the only code that calls the storage engine: the connection
//! loop hands it a method, a resource and a body, and gets back a status and a JSON body.

use std::cell::Cell;

use crate::body::{parse_transaction, BodyError};
use crate::http::Method;
use crate::json;
use crate::ledger::{now_us, AppendError, ReadError, Statement, Worker};
use crate::response::Status;
use crate::route::Resource;

/// The handlers of one worker thread, over its storage handle.
pub struct Handlers {
    worker: Worker,
    /// Whether a storage failure was already reported on stderr.
    unavailable_reported: Cell<bool>,
}

/// What a connection keeps for the handlers between its requests, so that reading a statement
/// reuses its buffers.
#[derive(Default)]
pub struct Scratch {
    statement: Statement,
}

/// The outcome of one request.
pub struct Answer {
    /// The response status.
    pub status: Status,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// Close the connection after this response.
    pub close: bool,
}

impl Answer {
    fn status(status: Status) -> Answer {
        Answer {
            status,
            allow: None,
            close: false,
        }
    }
}

impl Handlers {
    /// The handlers over this thread's storage handle.
    pub fn new(worker: Worker) -> Handlers {
        Handlers {
            worker,
            unavailable_reported: Cell::new(false),
        }
    }

    /// Answers one request: writes the JSON body into `json` and returns the status.
    pub async fn answer(
        &self,
        method: Method,
        resource: Resource,
        body: &[u8],
        json: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Answer {
        json.clear();
        let (account_id, allowed) = match resource {
            Resource::Transactions(id) => (id, Method::Post),
            Resource::Statement(id) => (id, Method::Get),
            Resource::NoSuchAccount => return not_found(json, "account not found"),
            Resource::NotFound => return not_found(json, "not found"),
        };
        // An unknown account answers 404 whatever the method or body: the resource does not
        // exist.
        if self.worker.db().limit(account_id).is_none() {
            return not_found(json, "account not found");
        }
        if method != allowed {
            json::write_error(json, "method not allowed");
            return Answer {
                status: Status::MethodNotAllowed,
                allow: resource.allow(),
                close: false,
            };
        }
        match resource {
            Resource::Transactions(_) => self.append(account_id, body, json).await,
            _ => {
                self.read_statement(account_id, json, &mut scratch.statement)
                    .await
            }
        }
    }

    async fn append(&self, account_id: u32, body: &[u8], json: &mut Vec<u8>) -> Answer {
        let transaction = match parse_transaction(body) {
            Ok(transaction) => transaction,
            Err(error) => {
                json::write_error(
                    json,
                    match error {
                        BodyError::Syntax => "body is not a JSON document",
                        BodyError::Invalid => "invalid transaction: valor, tipo or descricao",
                    },
                );
                return Answer::status(Status::UnprocessableContent);
            }
        };
        match self.worker.append(account_id, &transaction.entry()).await {
            Ok(appended) => {
                json::write_appended(json, appended.limit, appended.balance);
                Answer::status(Status::Ok)
            }
            Err(AppendError::UnknownAccount) => not_found(json, "account not found"),
            Err(AppendError::LimitExceeded) => rejected(json, "limit exceeded"),
            Err(AppendError::Overflow) => rejected(json, "balance overflow"),
            Err(AppendError::Unavailable(error)) => self.unavailable(json, &error),
        }
    }

    async fn read_statement(
        &self,
        account_id: u32,
        json: &mut Vec<u8>,
        statement: &mut Statement,
    ) -> Answer {
        match self.worker.statement(account_id, statement).await {
            Ok(()) => {
                json::write_statement(json, statement, now_us());
                Answer::status(Status::Ok)
            }
            Err(ReadError::UnknownAccount) => not_found(json, "account not found"),
            Err(ReadError::Unavailable(error)) => self.unavailable(json, &error),
        }
    }

    fn unavailable(&self, json: &mut Vec<u8>, error: &dyn std::fmt::Display) -> Answer {
        if !self.unavailable_reported.replace(true) {
            eprintln!("rinha-api: storage unavailable, answering 503: {error}");
        }
        json::write_error(json, "storage unavailable");
        Answer {
            status: Status::ServiceUnavailable,
            allow: None,
            close: true,
        }
    }
}

fn not_found(json: &mut Vec<u8>, message: &str) -> Answer {
    json::write_error(json, message);
    Answer::status(Status::NotFound)
}

fn rejected(json: &mut Vec<u8>, message: &str) -> Answer {
    json::write_error(json, message);
    Answer::status(Status::UnprocessableContent)
}
