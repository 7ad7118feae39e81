//! Consistency across two `rinha-api` instances sharing one data directory: alternating
//! requests lose nothing from the history, and concurrent debits never pass the limit.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{open, post_request, statement_request, Addr, Cluster, Conn, Driver, Reader};

rinha_testkit::tests! {
    alternating_default_driver => check_alternating(Driver::Default);
    alternating_epoll => check_alternating(Driver::Epoll);
    concurrent_debits_default_driver => check_concurrent(Driver::Default);
    concurrent_debits_epoll => check_concurrent(Driver::Epoll);
}

/// A keep-alive connection with its response reader.
struct Client {
    conn: Conn,
    reader: Reader,
}

impl Client {
    fn new(target: &Addr) -> Client {
        Client {
            conn: open(target),
            reader: Reader::new(),
        }
    }

    fn post(
        &mut self,
        account: u32,
        value: i64,
        kind: char,
        description: &str,
    ) -> support::Response {
        self.conn
            .send(&post_request(account, value, kind, description));
        self.reader.response(&mut self.conn)
    }

    fn statement(&mut self, account: u32) -> serde_json::Value {
        self.conn.send(&statement_request(account));
        let response = self.reader.response(&mut self.conn);
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }
}

/// The story: a reference implementation of this design kept the balance right while every
/// other transaction vanished from the history, because each instance wrote over the other's
/// rows from a stale copy. Here every transaction, made on one instance, must show at once on
/// the other in order, and the account file must hold the whole history.
fn check_alternating(driver: Driver) {
    const TRANSACTIONS: usize = 300;
    const ACCOUNT: u32 = 1;
    let mut cluster = Cluster::start("alternating", driver);
    // Instance A over TCP, B over its Unix socket.
    let mut clients = [Client::new(&cluster.a.tcp), Client::new(&cluster.b.unix)];
    let mut balance = 0i64;
    let mut expected = Vec::new();
    for index in 0..TRANSACTIONS {
        let (kind, value) = if index % 3 == 2 {
            ('d', 70 + index as i64)
        } else {
            ('c', 50 + index as i64)
        };
        let description = format!("t{index}");
        let writer = index % 2;
        let response = clients[writer].post(ACCOUNT, value, kind, &description);
        assert_eq!(response.status, 200, "transaction {index}: {response:?}");
        balance += if kind == 'c' { value } else { -value };
        assert_eq!(response.json()["saldo"], balance, "transaction {index}");
        expected.push((value, kind, description));
        // The other instance sees it at once, newest first, after its predecessor.
        let statement = clients[1 - writer].statement(ACCOUNT);
        assert_eq!(
            statement["saldo"]["total"], balance,
            "after transaction {index}"
        );
        let listed = statement["ultimas_transacoes"].as_array().unwrap();
        assert_eq!(listed.len(), (index + 1).min(10));
        for (offset, entry) in listed.iter().enumerate() {
            let (value, kind, description) = &expected[index - offset];
            assert_eq!(entry["valor"], *value, "after {index}, entry {offset}");
            assert_eq!(
                entry["tipo"],
                kind.to_string(),
                "after {index}, entry {offset}"
            );
            assert_eq!(
                entry["descricao"],
                description.as_str(),
                "after {index}, entry {offset}"
            );
        }
    }
    assert!(cluster
        .a
        .server
        .terminate(Duration::from_secs(10))
        .success());
    assert!(cluster
        .b
        .server
        .terminate(Duration::from_secs(10))
        .success());
    // The whole history, as stored: every transaction once, in order, balances chained.
    let path = cluster
        .dir
        .path()
        .join("data")
        .join(espora::file::account_file_name(ACCOUNT));
    let (_file, mapping) = espora::file::open_existing(&path).unwrap();
    let scan = espora::verify::scan(&mapping, 0).expect("sound history");
    assert_eq!(scan.newest, TRANSACTIONS as u64);
    let mut chained = 0i64;
    for (index, (value, kind, description)) in expected.iter().enumerate() {
        let record = mapping
            .read_record(index as u64 + 1)
            .unwrap_or_else(|| panic!("record {}", index + 1));
        assert_eq!(
            (record.value, record.kind.as_char(), record.description()),
            (*value, *kind, description.as_str())
        );
        chained += if *kind == 'c' { *value } else { -*value };
        assert_eq!(record.balance, chained, "record {}", index + 1);
    }
}

/// Hundreds of debits at once on one account through both instances: exactly as many succeed
/// as the limit allows, none sees a balance below it, and both instances agree on the end.
fn check_concurrent(driver: Driver) {
    const ACCOUNT: u32 = 2;
    const LIMIT: i64 = 80_000;
    const DEBIT: i64 = 300;
    const THREADS: usize = 12;
    const DEBITS_PER_THREAD: usize = 30;
    let cluster = Cluster::start("concurrent", driver);
    let targets = cluster.targets();
    let accepted = AtomicUsize::new(0);
    let balances = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (target, accepted, balances) =
                (targets[thread % targets.len()], &accepted, &balances);
            scope.spawn(move || {
                // Half the threads keep their connection, half open one per request.
                let mut client = Client::new(target);
                for index in 0..DEBITS_PER_THREAD {
                    let description = format!("d{thread}-{index}");
                    let response = if thread % 2 == 0 {
                        client.post(ACCOUNT, DEBIT, 'd', &description)
                    } else {
                        support::post(target, ACCOUNT, DEBIT, 'd', &description)
                    };
                    match response.status {
                        200 => {
                            let saldo = response.json()["saldo"].as_i64().unwrap();
                            assert!(saldo >= -LIMIT, "saldo {saldo} below the limit");
                            accepted.fetch_add(1, Ordering::Relaxed);
                            balances.lock().unwrap().push(saldo);
                        }
                        422 => {}
                        other => panic!("unexpected status {other}: {response:?}"),
                    }
                }
            });
        }
    });
    let fits = (LIMIT / DEBIT) as usize;
    assert!(
        THREADS * DEBITS_PER_THREAD > fits,
        "the test must hit the limit"
    );
    assert_eq!(accepted.load(Ordering::Relaxed), fits);
    // Every accepted debit produced its own balance: no two saw the same previous state.
    let mut balances = balances.into_inner().unwrap();
    balances.sort_unstable();
    let expected: Vec<i64> = (1..=fits as i64).rev().map(|n| -n * DEBIT).collect();
    assert_eq!(balances, expected);
    for target in targets {
        let statement = support::statement(target, ACCOUNT);
        assert_eq!(statement["saldo"]["total"], -(fits as i64) * DEBIT);
        assert_eq!(
            statement["ultimas_transacoes"].as_array().unwrap().len(),
            10
        );
    }
    // Mixed credits and debits at once: the end balance is the sum of what was accepted.
    let net = std::sync::atomic::AtomicI64::new(-(fits as i64) * DEBIT);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (target, net) = (targets[thread % targets.len()], &net);
            scope.spawn(move || {
                let mut client = Client::new(target);
                for index in 0..20 {
                    let value = 1 + ((thread * 7919 + index * 104_729) % 5000) as i64;
                    let kind = if (thread + index) % 2 == 0 { 'c' } else { 'd' };
                    let response = client.post(ACCOUNT, value, kind, "misto");
                    match response.status {
                        200 => {
                            assert!(response.json()["saldo"].as_i64().unwrap() >= -LIMIT);
                            net.fetch_add(
                                if kind == 'c' { value } else { -value },
                                Ordering::Relaxed,
                            );
                        }
                        422 => assert_eq!(kind, 'd', "a credit was refused"),
                        other => panic!("unexpected status {other}"),
                    }
                }
            });
        }
    });
    let total = net.load(Ordering::Relaxed);
    assert!(total >= -LIMIT);
    for target in targets {
        assert_eq!(support::statement(target, ACCOUNT)["saldo"]["total"], total);
    }
}
