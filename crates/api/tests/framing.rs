//! The strict framing rules of `src/http.rs` and `src/chunked.rs` through a real socket: a
//! missing or repeated Host, an invalid request target and a chunk-size line outside RFC 9112's
//! grammar each get a 400 with its message, then the connection closes and the request
//! pipelined behind is never run; an absolute-form target, an HTTP/1.0 request without Host and
//! chunk extensions with bad whitespace are served. Every case is a row of those files' tables;
//! this checks the connection around them, once, as the parser is the same under both drivers.

mod support;

use rinha_testkit::http::transaction;
use support::{open, request_bytes, single, statement, Addr, Driver, Reader};

#[test]
fn strict_framing_through_a_socket() {
    let (instance, _dir) = single("framing", Driver::Default);
    refusals(&instance.tcp);
    accepted(&instance.tcp);
}

fn refusals(target: &Addr) {
    // Pipelined behind each refused request; it must never run.
    let hidden = request_bytes(
        "POST",
        "/clientes/2/transacoes",
        Some(&transaction(1, 'c', "hidden")),
    );
    let body = transaction(1, 'c', "refused");
    let chunked = |size_line: &str| {
        format!(
            "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             {size_line}\r\n{body}\r\n0\r\n\r\n"
        )
    };
    let size = format!("{:x}", body.len());
    let cases = [
        (
            "GET /clientes/1/extrato HTTP/1.1\r\n\r\n".to_owned(),
            "missing Host header",
        ),
        (
            "GET /clientes/1/extrato HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n".to_owned(),
            "more than one Host header",
        ),
        (
            "GET ftp://x/clientes/1/extrato HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "invalid request target",
        ),
        (
            "GET http://user@x/clientes/1/extrato HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "invalid request target",
        ),
        (chunked(&format!("{size};a\nb")), "malformed chunked body"),
        (
            chunked(&format!("{size};a=\"\0\"")),
            "malformed chunked body",
        ),
        (chunked(&format!("{size} ")), "malformed chunked body"),
    ];
    for (request, message) in cases {
        let mut conn = open(target);
        conn.send(&[request.as_bytes(), &hidden].concat());
        let mut reader = Reader::new();
        let response = reader.response(&mut conn);
        assert_eq!(response.status, 400, "{request:?}: {response:?}");
        assert_eq!(response.json(), serde_json::json!({ "erro": message }));
        assert_eq!(response.header("connection"), Some("close"), "{request:?}");
        assert!(
            reader.pending().is_empty() && conn.closes_without_more(),
            "{request:?}: more than one answer"
        );
    }
    // Neither the refused transactions nor the hidden ones ran.
    for account in [1, 2] {
        assert_eq!(statement(target, account)["saldo"]["total"], 0);
    }
}

fn accepted(target: &Addr) {
    let mut conn = open(target);
    let mut reader = Reader::new();
    // An absolute-form target routes by its path, whatever its authority says.
    let body = transaction(7, 'c', "absolute");
    conn.send(
        format!(
            "POST https://elsewhere.example:443/clientes/3/transacoes HTTP/1.1\r\nHost: t\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let response = reader.response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    conn.send(b"GET http://localhost:9999/clientes/3/extrato?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = reader.response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["saldo"]["total"], 7);
    // Chunk extensions with the bad whitespace RFC 9112's grammar allows.
    let body = transaction(3, 'c', "extension");
    conn.send(
        format!(
            "POST /clientes/3/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x} ; name = \"quoted value\" ;flag\r\n{body}\r\n0;last=1\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let response = reader.response(&mut conn);
    assert_eq!(response.json()["saldo"], 10, "{response:?}");
    // HTTP/1.0 has no Host to require.
    let mut conn = open(target);
    conn.send(b"GET /clientes/3/extrato HTTP/1.0\r\n\r\n");
    let response = Reader::new().response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["saldo"]["total"], 10);
}
