//! Property test: random sequences of credits, debits, statements and reopenings against a
//! simple in-memory model. The file's balance and history must always equal the model's.

mod support;

use std::sync::Arc;

use espora::{AppendError, Db, Invalid, Kind, Options, Statement, Transaction};
use proptest::prelude::*;
use support::{block_on, read_history};

/// A small ring so that the sequences wrap it.
const RING: u64 = 64;

#[derive(Clone, Debug)]
enum Op {
    Append {
        account: u32,
        kind: Kind,
        value: i64,
        description: String,
    },
    Statement {
        account: u32,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    // Account 1 gets most of the traffic so that its ring wraps; 0 and 6 do not exist.
    let account = prop_oneof![3 => Just(1u32), 2 => 0u32..=6];
    let value = prop_oneof![
        8 => 1i64..=200_000,
        1 => Just(i64::MAX),
        1 => (i64::MAX - 10)..=i64::MAX,
    ];
    let kind = prop_oneof![Just(Kind::Credit), Just(Kind::Debit)];
    prop_oneof![
        12 => (account.clone(), kind, value, "[a-zé😀 ]{1,10}")
            .prop_map(|(account, kind, value, description)| Op::Append { account, kind, value, description }),
        3 => account.prop_map(|account| Op::Statement { account }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct ModelAccount {
    limit: i64,
    balance: i64,
    history: Vec<(i64, Kind, String, i64)>,
}

struct Model {
    accounts: Vec<ModelAccount>,
}

impl Model {
    fn new() -> Model {
        let accounts = support::ACCOUNTS
            .iter()
            .map(|&(_, limit)| ModelAccount {
                limit,
                ..Default::default()
            })
            .collect();
        Model { accounts }
    }

    fn account(&mut self, id: u32) -> Option<&mut ModelAccount> {
        (1..=5)
            .contains(&id)
            .then(|| &mut self.accounts[id as usize - 1])
    }

    /// The model's answer to an append: the new balance, or the error kind.
    fn append(
        &mut self,
        id: u32,
        kind: Kind,
        value: i64,
        description: &str,
    ) -> Result<i64, &'static str> {
        let account = self.account(id).ok_or("unknown")?;
        let balance = match kind {
            Kind::Credit => account.balance.checked_add(value),
            Kind::Debit => account.balance.checked_sub(value),
        }
        .ok_or("overflow")?;
        if balance < -account.limit {
            return Err("limit");
        }
        account.balance = balance;
        account
            .history
            .push((value, kind, description.to_string(), balance));
        Ok(balance)
    }
}

fn error_name(e: &AppendError) -> &'static str {
    match e {
        AppendError::UnknownAccount => "unknown",
        AppendError::LimitExceeded => "limit",
        AppendError::Overflow => "overflow",
        AppendError::Unavailable(_) => "unavailable",
    }
}

fn run(ops: Vec<Op>) {
    let dir = support::temp_dir();
    let options = Options {
        ring_records: RING,
        ..support::options()
    };
    let mut model = Model::new();
    block_on(async {
        let mut db = Arc::new(Db::open(dir.path(), options.clone()).unwrap());
        let mut worker = db.worker(support::backend()).unwrap();
        let mut statement = Statement::default();
        for op in ops {
            match op {
                Op::Append {
                    account,
                    kind,
                    value,
                    description,
                } => {
                    let tx = Transaction {
                        value,
                        kind,
                        description: &description,
                    };
                    let entry = tx.validate().expect("the generated transactions are valid");
                    let got = worker.append(account, &entry).await;
                    let expected = model.append(account, kind, value, &description);
                    let got = got.map(|a| a.balance).map_err(|e| error_name(&e));
                    assert_eq!(got, expected, "append {account} {kind:?} {value}");
                }
                Op::Statement { account } => {
                    let got = worker.statement(account, &mut statement).await;
                    let Some(model_account) = model.account(account) else {
                        assert!(matches!(got, Err(espora::ReadError::UnknownAccount)));
                        continue;
                    };
                    got.unwrap();
                    assert_eq!(statement.balance, model_account.balance);
                    assert_eq!(statement.limit, model_account.limit);
                    let expected: Vec<_> = model_account
                        .history
                        .iter()
                        .rev()
                        .take(options.statement_records)
                        .collect();
                    assert_eq!(statement.records.len(), expected.len());
                    let seq_newest = model_account.history.len() as u64;
                    for (i, (record, (value, kind, description, balance))) in
                        statement.records.iter().zip(expected).enumerate()
                    {
                        assert_eq!(record.seq, seq_newest - i as u64);
                        assert_eq!(
                            (record.value, record.kind, record.balance),
                            (*value, *kind, *balance)
                        );
                        assert_eq!(record.description(), description);
                    }
                }
                Op::Reopen => {
                    drop(worker);
                    drop(db);
                    db = Arc::new(Db::open(dir.path(), options.clone()).unwrap());
                    worker = db.worker(support::backend()).unwrap();
                }
            }
        }
    });
    for (i, account) in model.accounts.iter().enumerate() {
        let (scan, records, _) = read_history(dir.path(), i as u32 + 1);
        assert_eq!(scan.newest as usize, account.history.len());
        assert_eq!(scan.balance, account.balance);
        let retained = account.history.len().min(RING as usize);
        assert_eq!(records.len(), retained);
        let tail = &account.history[account.history.len() - retained..];
        for (record, (value, kind, description, balance)) in records.iter().zip(tail) {
            assert_eq!(
                (record.value, record.kind, record.balance),
                (*value, *kind, *balance)
            );
            assert_eq!(record.description(), description);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn file_state_and_history_equal_the_model(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

#[test]
fn transactions_outside_the_rules_never_reach_the_file() {
    let dir = support::temp_dir();
    block_on(async {
        let db = Arc::new(Db::open(dir.path(), support::options()).unwrap());
        let worker = db.worker(support::backend()).unwrap();
        let fits = "0123456789012345678901234567890123456789";
        let cases: [(i64, &str, Result<(), Invalid>); 7] = [
            (0, "ok", Err(Invalid::Value)),
            (-5, "ok", Err(Invalid::Value)),
            (1, fits, Ok(())),
            (
                1,
                "01234567890123456789012345678901234567890",
                Err(Invalid::Description),
            ),
            (1, "ééééééééééééééééééééé", Err(Invalid::Description)),
            // How many characters a description may have is the API's rule, not the file's.
            (1, "", Ok(())),
            (1, "01234567890", Ok(())),
        ];
        let mut balance = 0;
        for (value, description, expected) in cases {
            let tx = Transaction {
                value,
                kind: Kind::Credit,
                description,
            };
            let validated = tx.validate();
            assert_eq!(validated.map(|_| ()), expected, "{value} {description:?}");
            if let Ok(entry) = validated {
                balance = worker.append(1, &entry).await.unwrap().balance;
            }
        }
        let mut statement = Statement::default();
        worker.statement(1, &mut statement).await.unwrap();
        assert_eq!((statement.balance, statement.records.len()), (balance, 3));
        assert_eq!(balance, 3);
        let stored: Vec<&str> = statement
            .records
            .iter()
            .map(|r| r.description.as_str())
            .collect();
        assert_eq!(stored, ["01234567890", "", fits]);
    });
}
