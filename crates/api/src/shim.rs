//! TEMPORARY in-memory stand-in with espora's public API, process-local and not durable.
//! It exists only until the espora crate lands; nothing ships with it.

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const STATEMENT_RECORDS_MAX: usize = 10;

#[derive(Debug)]
pub struct OpenError(String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Default)]
pub struct Options {
    pub ring_records: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Credit,
    Debit,
}

impl Kind {
    pub fn as_char(self) -> char {
        match self {
            Kind::Credit => 'c',
            Kind::Debit => 'd',
        }
    }
}

pub struct Transaction<'a> {
    pub value: i64,
    pub kind: Kind,
    pub description: &'a str,
}

#[derive(Debug)]
pub struct Appended {
    pub balance: i64,
    pub limit: i64,
}

#[derive(Debug)]
pub enum AppendError {
    UnknownAccount,
    LimitExceeded,
    Overflow,
    Invalid(&'static str),
    Unavailable(String),
}

#[derive(Debug)]
pub enum ReadError {
    UnknownAccount,
    Unavailable(String),
}

#[derive(Clone)]
pub struct Record {
    pub seq: u64,
    pub value: i64,
    pub kind: Kind,
    pub timestamp_us: i64,
    pub balance: i64,
    description: String,
}

impl Record {
    pub fn description(&self) -> &str {
        &self.description
    }
}

#[derive(Default)]
pub struct Statement {
    pub balance: i64,
    pub limit: i64,
    pub records: Vec<Record>,
}

struct Account {
    limit: i64,
    balance: i64,
    records: Vec<Record>,
}

pub struct Db {
    accounts: Arc<Mutex<Vec<Account>>>,
}

impl Db {
    pub fn open(dir: &Path, _options: Options) -> Result<Db, OpenError> {
        if !dir.is_dir() {
            return Err(OpenError(format!(
                "data directory {} is not a directory",
                dir.display()
            )));
        }
        let limits = [100_000, 80_000, 1_000_000, 10_000_000, 500_000];
        let accounts = limits
            .iter()
            .map(|&limit| Account {
                limit,
                balance: 0,
                records: Vec::new(),
            })
            .collect();
        Ok(Db {
            accounts: Arc::new(Mutex::new(accounts)),
        })
    }

    pub fn limit(&self, account_id: u32) -> Option<i64> {
        let accounts = self.accounts.lock().unwrap();
        accounts
            .get((account_id as usize).wrapping_sub(1))
            .map(|account| account.limit)
    }

    pub fn worker(self: &Arc<Db>) -> Result<Worker, OpenError> {
        Ok(Worker {
            db: Arc::clone(self),
            _not_send: RefCell::new(()),
        })
    }
}

pub struct Worker {
    db: Arc<Db>,
    _not_send: RefCell<()>,
}

impl Worker {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn append(
        &self,
        account_id: u32,
        tx: &Transaction<'_>,
    ) -> Result<Appended, AppendError> {
        let mut accounts = self.db.accounts.lock().unwrap();
        let index = (account_id as usize).wrapping_sub(1);
        let account = accounts.get_mut(index).ok_or(AppendError::UnknownAccount)?;
        let balance = match tx.kind {
            Kind::Credit => account
                .balance
                .checked_add(tx.value)
                .ok_or(AppendError::Overflow)?,
            Kind::Debit => account
                .balance
                .checked_sub(tx.value)
                .ok_or(AppendError::Overflow)?,
        };
        if balance < -account.limit {
            return Err(AppendError::LimitExceeded);
        }
        account.balance = balance;
        let seq = account.records.len() as u64 + 1;
        let timestamp_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        account.records.push(Record {
            seq,
            value: tx.value,
            kind: tx.kind,
            timestamp_us,
            balance,
            description: tx.description.to_owned(),
        });
        Ok(Appended {
            balance,
            limit: account.limit,
        })
    }

    pub async fn statement(&self, account_id: u32, out: &mut Statement) -> Result<(), ReadError> {
        let accounts = self.db.accounts.lock().unwrap();
        let index = (account_id as usize).wrapping_sub(1);
        let account = accounts.get(index).ok_or(ReadError::UnknownAccount)?;
        out.balance = account.balance;
        out.limit = account.limit;
        out.records.clear();
        out.records.extend(
            account
                .records
                .iter()
                .rev()
                .take(STATEMENT_RECORDS_MAX)
                .cloned(),
        );
        Ok(())
    }
}
