//! The API contract, end to end: two real `rinha-api` processes on one data directory, spoken
//! to over TCP and Unix sockets, once with the default driver and once with epoll forced.

mod support;

use serde_json::json;
use support::{assert_timestamp, post, request, statement, Addr, Cluster, Driver};

use rinha_api::contract::ACCOUNTS as LIMITS;

rinha_testkit::tests! {
    contract_default_driver => check_contract(Driver::Default);
    contract_epoll => check_contract(Driver::Epoll);
}

fn check_contract(driver: Driver) {
    let cluster = Cluster::start("contract", driver);
    fresh_accounts(&cluster.targets());
    transactions_and_statements(&cluster.a.tcp, &cluster.b.unix);
    invalid_bodies(&cluster.b.tcp);
    not_found(&cluster.a.unix);
    wrong_methods(&cluster.b.tcp);
    balance_overflow(&cluster.a.tcp, &cluster.b.tcp);
}

/// Five accounts, balance 0, no history, whichever instance and transport is asked.
fn fresh_accounts(targets: &[&Addr]) {
    for (index, (id, limit)) in LIMITS.into_iter().enumerate() {
        let body = statement(targets[index % targets.len()], id);
        assert_eq!(body["saldo"]["total"], 0);
        assert_eq!(body["saldo"]["limite"], limit);
        assert_timestamp(body["saldo"]["data_extrato"].as_str().unwrap());
        assert_eq!(body["ultimas_transacoes"], json!([]));
    }
}

fn transactions_and_statements(a: &Addr, b: &Addr) {
    let credit = post(a, 1, 1000, 'c', "toma");
    assert_eq!(credit.status, 200, "{credit:?}");
    assert_eq!(credit.header("content-type"), Some("application/json"));
    assert_eq!(credit.json(), json!({"limite": 100000, "saldo": 1000}));
    let debit = post(b, 1, 10098, 'd', "devolve");
    assert_eq!(debit.json(), json!({"limite": 100000, "saldo": -9098}));
    // A debit that would pass the limit answers 422 and changes nothing.
    let refused = post(a, 1, 100_000 - 9098 + 1, 'd', "demais");
    assert_eq!(refused.status, 422, "{refused:?}");
    // Exactly down to the limit is allowed.
    let to_limit = post(b, 1, 100_000 - 9098, 'd', "no limite");
    assert_eq!(to_limit.json(), json!({"limite": 100000, "saldo": -100000}));
    assert_eq!(post(a, 1, 1, 'd', "um a mais").status, 422);
    assert_eq!(post(a, 1, 100_000, 'c', "repoe").status, 200);
    let body = statement(b, 1);
    assert_eq!(body["saldo"]["total"], 0);
    assert_eq!(body["saldo"]["limite"], 100000);
    let history = body["ultimas_transacoes"].as_array().unwrap();
    let summary: Vec<(i64, &str, &str)> = history
        .iter()
        .map(|t| {
            (
                t["valor"].as_i64().unwrap(),
                t["tipo"].as_str().unwrap(),
                t["descricao"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (100_000, "c", "repoe"),
            (90_902, "d", "no limite"),
            (10098, "d", "devolve"),
            (1000, "c", "toma")
        ]
    );
    for entry in history {
        assert_timestamp(entry["realizada_em"].as_str().unwrap());
        assert_eq!(entry.as_object().unwrap().len(), 4, "{entry}");
    }
    // Newest first: times never increase down the list.
    let times: Vec<&str> = history
        .iter()
        .map(|t| t["realizada_em"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    // Descriptions come back as sent, escapes and all; the list keeps the newest ten.
    let descriptions = ["éééééééééé", "a\"b\\c", "tab\there", "😀", "x"];
    for description in descriptions {
        assert_eq!(
            post(a, 2, 1, 'c', description).status,
            200,
            "{description:?}"
        );
    }
    for n in 0..8 {
        assert_eq!(post(b, 2, 1, 'c', &format!("n{n}")).status, 200);
    }
    let body = statement(a, 2);
    assert_eq!(body["saldo"]["total"], 13);
    let listed: Vec<&str> = body["ultimas_transacoes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["descricao"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["n7", "n6", "n5", "n4", "n3", "n2", "n1", "n0", "x", "😀"]
    );
    // Query strings are ignored.
    let with_query = request(
        a,
        "POST",
        "/clientes/3/transacoes?x=1",
        Some(r#"{"valor":5,"tipo":"c","descricao":"q"}"#),
    );
    assert_eq!(with_query.json(), json!({"limite": 1000000, "saldo": 5}));
    let with_query = request(b, "GET", "/clientes/3/extrato?limit=1&x", None);
    assert_eq!(with_query.json()["saldo"]["total"], 5);
}

fn invalid_bodies(target: &Addr) {
    let invalid = [
        r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": 1.0, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": 1e3, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": "10", "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": 0, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": -5, "tipo": "c", "descricao": "devolve"}"#,
        r#"{"valor": null, "tipo": "c", "descricao": "devolve"}"#,
        r#"{"valor": 99999999999999999999, "tipo": "c", "descricao": "devolve"}"#,
        r#"{"tipo": "c", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "C", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": null, "descricao": "devolve"}"#,
        r#"{"valor": 1, "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": 5}"#,
        r#"{"valor": 1, "tipo": "c"}"#,
        r#"[1, "c", "devolve"]"#,
        r#"{"valor": 1, "valor": 2, "tipo": "c", "descricao": "dup"}"#,
        "",
        "not json",
        r#"{"valor": 1, "tipo": "c", "descricao": "x"} trailing"#,
    ];
    for body in invalid {
        let response = request(target, "POST", "/clientes/4/transacoes", Some(body));
        assert!(
            response.status == 422 || response.status == 400,
            "body {body:?} answered {response:?}"
        );
        assert!(response.json().is_object());
    }
    // Nothing of that changed the account.
    let body = statement(target, 4);
    assert_eq!(body["saldo"]["total"], 0);
    assert_eq!(body["ultimas_transacoes"], json!([]));
    // Unknown fields are ignored.
    let extra = r#"{"valor": 7, "tipo": "c", "descricao": "extra", "moeda": "BRL", "x": [1, {}]}"#;
    let response = request(target, "POST", "/clientes/4/transacoes", Some(extra));
    assert_eq!(response.json(), json!({"limite": 10000000, "saldo": 7}));
}

fn not_found(target: &Addr) {
    for id in [
        "6",
        "0",
        "999",
        "4294967295",
        "abc",
        "-1",
        "1.5",
        "999999999999999999999999999999",
    ] {
        let response = request(target, "GET", &format!("/clientes/{id}/extrato"), None);
        assert_eq!(response.status, 404, "id {id}: {response:?}");
        let body = rinha_testkit::http::transaction(1, 'c', "x");
        let response = request(
            target,
            "POST",
            &format!("/clientes/{id}/transacoes"),
            Some(&body),
        );
        assert_eq!(response.status, 404, "id {id}: {response:?}");
        // Every request about an account that does not exist is a 404, even a wrong method.
        let response = request(target, "DELETE", &format!("/clientes/{id}/extrato"), None);
        assert_eq!(response.status, 404, "id {id}: {response:?}");
    }
    // An unknown account is 404 before its body is looked at.
    let response = request(target, "POST", "/clientes/6/transacoes", Some("not json"));
    assert_eq!(response.status, 404);
    for path in [
        "/",
        "/clientes",
        "/clientes/1",
        "/clientes/1/",
        "/clientes/1/extrato/",
        "/clientes/1/saldo",
        "/x/1/extrato",
    ] {
        assert_eq!(
            request(target, "GET", path, None).status,
            404,
            "path {path}"
        );
        assert_eq!(
            request(target, "POST", path, Some("{}")).status,
            404,
            "path {path}"
        );
    }
}

fn wrong_methods(target: &Addr) {
    let cases = [
        ("POST", "/clientes/1/extrato", "GET"),
        ("PUT", "/clientes/1/extrato", "GET"),
        ("DELETE", "/clientes/5/extrato", "GET"),
        ("HEAD", "/clientes/5/extrato", "GET"),
        ("GET", "/clientes/1/transacoes", "POST"),
        ("PATCH", "/clientes/2/transacoes", "POST"),
    ];
    for (method, path, allow) in cases {
        let body = (method != "GET" && method != "HEAD").then_some("{}");
        let mut conn = support::open(target);
        conn.send(&support::request_bytes(method, path, body));
        if method == "HEAD" {
            // A HEAD response has no content whatever the status (RFC 9110), so a client reads
            // its head only. Story: it used to carry the error's JSON, which a keep-alive
            // client then took for the start of the next response.
            let received = conn_read_head(&mut conn);
            assert!(received.starts_with("HTTP/1.1 405 "), "{received}");
            assert!(
                received.ends_with("\r\n\r\n"),
                "content after the head: {received}"
            );
            assert!(
                received.contains(&format!("\r\nAllow: {allow}\r\n")),
                "{received}"
            );
            assert!(!received.contains("Content-Length"), "{received}");
            conn.send(&support::request_bytes("GET", path, None));
            let next = support::Reader::new().response(&mut conn);
            assert_eq!(
                next.status, 200,
                "the next answer on the connection: {next:?}"
            );
            continue;
        }
        let response = support::Reader::new().response(&mut conn);
        assert_eq!(response.status, 405, "{method} {path}: {response:?}");
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
    }
}

fn conn_read_head(conn: &mut support::Conn) -> String {
    use std::io::Read;
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let count = conn.read(&mut chunk).unwrap();
        assert!(count > 0);
        received.extend_from_slice(&chunk[..count]);
    }
    String::from_utf8(received).unwrap()
}

/// A credit that would overflow the balance is refused, never wrapped.
fn balance_overflow(a: &Addr, b: &Addr) {
    let max = post(a, 5, i64::MAX, 'c', "max");
    assert_eq!(max.json(), json!({"limite": 500000, "saldo": i64::MAX}));
    let over = post(b, 5, 1, 'c', "overflow");
    assert_eq!(over.status, 422, "{over:?}");
    let body = statement(a, 5);
    assert_eq!(body["saldo"]["total"], i64::MAX);
    // Debiting the whole of it and the limit lands exactly on -limit.
    assert_eq!(post(b, 5, i64::MAX, 'd', "back").json()["saldo"], 0);
    assert_eq!(post(a, 5, 500_000, 'd', "limit").json()["saldo"], -500_000);
    // A debit of i64::MAX from -limit would underflow: refused as well.
    assert_eq!(post(b, 5, i64::MAX, 'd', "under").status, 422);
    assert_eq!(statement(b, 5)["saldo"]["total"], -500_000);
}
