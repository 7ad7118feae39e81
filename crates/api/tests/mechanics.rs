//! HTTP mechanics against a real `rinha-api` process: pipelining, chunked bodies,
//! `100-continue`, limits, framing attacks, HTTP/1.0, timeouts and graceful shutdown. Each
//! scenario is a test of its own, run with the default driver and with epoll forced, each on a
//! fresh instance.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::{open, request_bytes, single, Addr, Conn, Driver, Reader};

/// Runs `scenario` against a fresh instance under `driver`, over TCP then over its Unix socket.
fn on_both_listeners(label: &str, driver: Driver, scenario: fn(&Addr)) {
    let (instance, _dir) = single(label, driver);
    for target in [&instance.tcp, &instance.unix] {
        scenario(target);
    }
}

rinha_testkit::tests! {
    pipelining_default_driver => on_both_listeners("pipelining", Driver::Default, pipelining);
    pipelining_epoll => on_both_listeners("pipelining", Driver::Epoll, pipelining);
    chunked_default_driver => on_both_listeners("chunked", Driver::Default, chunked);
    chunked_epoll => on_both_listeners("chunked", Driver::Epoll, chunked);
    expect_continue_default_driver =>
        on_both_listeners("continue", Driver::Default, expect_continue);
    expect_continue_epoll => on_both_listeners("continue", Driver::Epoll, expect_continue);
    limits_default_driver => on_both_listeners("limits", Driver::Default, limits);
    limits_epoll => on_both_listeners("limits", Driver::Epoll, limits);
    smuggling_default_driver => on_both_listeners("smuggling", Driver::Default, smuggling);
    smuggling_epoll => on_both_listeners("smuggling", Driver::Epoll, smuggling);
    http_1_0_default_driver => on_both_listeners("http10", Driver::Default, http_1_0);
    http_1_0_epoll => on_both_listeners("http10", Driver::Epoll, http_1_0);
    connection_close_default_driver =>
        on_both_listeners("close", Driver::Default, connection_close);
    connection_close_epoll => on_both_listeners("close", Driver::Epoll, connection_close);
    vanishing_client_default_driver =>
        on_both_listeners("vanishing", Driver::Default, vanishing_client);
    vanishing_client_epoll => on_both_listeners("vanishing", Driver::Epoll, vanishing_client);
    slow_request_times_out_default_driver => check_slow_request(Driver::Default);
    slow_request_times_out_epoll => check_slow_request(Driver::Epoll);
    graceful_shutdown_default_driver => check_graceful_shutdown(Driver::Default);
    graceful_shutdown_epoll => check_graceful_shutdown(Driver::Epoll);
}

/// Reads whatever the server sends until it closes the connection.
fn rest_until_close(conn: &mut Conn) -> String {
    String::from_utf8_lossy(&conn.read_until_closed()).into_owned()
}

/// Sends `bytes` on a new connection and reads whatever the server sends until it closes it.
fn until_close(target: &Addr, bytes: &[u8]) -> String {
    let mut conn = open(target);
    conn.send(bytes);
    rest_until_close(&mut conn)
}

fn pipelining(target: &Addr) {
    let mut conn = open(target);
    let mut batch = Vec::new();
    batch.extend(request_bytes(
        "POST",
        "/clientes/3/transacoes",
        Some(r#"{"valor":1,"tipo":"c","descricao":"p1"}"#),
    ));
    batch.extend(request_bytes("GET", "/clientes/3/extrato", None));
    batch.extend(request_bytes(
        "POST",
        "/clientes/3/transacoes",
        Some(r#"{"valor":2,"tipo":"c","descricao":"p2"}"#),
    ));
    batch.extend(request_bytes("GET", "/nowhere", None));
    batch.extend(request_bytes(
        "POST",
        "/clientes/3/transacoes",
        Some(r#"{"valor":4,"tipo":"d","descricao":"p3"}"#),
    ));
    conn.send(&batch);
    let mut reader = Reader::new();
    let first = reader.response(&mut conn);
    let balance = first.json()["saldo"].as_i64().unwrap();
    let second = reader.response(&mut conn);
    assert_eq!(second.json()["saldo"]["total"], balance);
    assert_eq!(second.json()["ultimas_transacoes"][0]["descricao"], "p1");
    assert_eq!(reader.response(&mut conn).json()["saldo"], balance + 2);
    assert_eq!(reader.response(&mut conn).status, 404);
    assert_eq!(reader.response(&mut conn).json()["saldo"], balance - 2);
    // Many small requests in one write, answered in order on the same connection.
    let count = 150;
    let mut batch = Vec::new();
    for index in 0..count {
        let path = if index % 2 == 0 {
            "/clientes/1/extrato"
        } else {
            "/clientes/77/extrato"
        };
        batch.extend(request_bytes("GET", path, None));
    }
    conn.send(&batch);
    for index in 0..count {
        let expected = if index % 2 == 0 { 200 } else { 404 };
        assert_eq!(
            reader.response(&mut conn).status,
            expected,
            "response {index}"
        );
    }
    // Requests split at every awkward place still work: byte by byte.
    let request = request_bytes(
        "POST",
        "/clientes/3/transacoes",
        Some(r#"{"valor":1,"tipo":"c","descricao":"bytes"}"#),
    );
    for byte in &request {
        conn.send(std::slice::from_ref(byte));
    }
    assert_eq!(reader.response(&mut conn).status, 200);
}

fn chunked(target: &Addr) {
    let head =
        "POST /clientes/2/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut conn = open(target);
    let mut reader = Reader::new();
    let (first, second) = (r#"{"valor":1,"tipo"#, r#"":"c","descricao":"chunk"}"#);
    conn.send(
        format!(
            "{head}{:x}\r\n{first}\r\n{:X};ext=1\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        )
        .as_bytes(),
    );
    let response = reader.response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    // In separate writes, with a trailer, then another request on the same connection.
    let whole = r#"{"valor":1,"tipo":"c","descricao":"chunk2"}"#;
    conn.send(head.as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    conn.send(format!("{:x}\r\n{whole}\r\n", whole.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    conn.send(b"0\r\nX-Trailer: yes\r\n\r\nGET /clientes/2/extrato HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reader.response(&mut conn).status, 200);
    let statement = reader.response(&mut conn).json();
    assert_eq!(statement["ultimas_transacoes"][0]["descricao"], "chunk2");
    assert_eq!(statement["ultimas_transacoes"][1]["descricao"], "chunk");
    // A chunked body trickling in byte by byte, with an extension and a trailer.
    let whole = r#"{"valor":1,"tipo":"c","descricao":"trickle"}"#;
    let (first, second) = whole.split_at(9);
    let trickle = format!(
        "{head}{:x};a=b\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\nX-T: 1\r\n\r\n",
        first.len(),
        second.len()
    );
    for byte in trickle.as_bytes() {
        conn.send(std::slice::from_ref(byte));
    }
    let response = reader.response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    // A malformed chunk is 400 and the connection closes.
    conn.send(format!("{head}zz\r\n").as_bytes());
    let rest = rest_until_close(&mut conn);
    assert!(rest.starts_with("HTTP/1.1 400 "), "{rest}");
    // A chunked body beyond 4 KiB is 413.
    let mut big = head.as_bytes().to_vec();
    big.extend_from_slice(b"1001\r\n");
    let rest = until_close(target, &big);
    assert!(rest.starts_with("HTTP/1.1 413 "), "{rest}");
}

fn expect_continue(target: &Addr) {
    let body = r#"{"valor":1,"tipo":"c","descricao":"cont"}"#;
    let mut conn = open(target);
    conn.send(format!("POST /clientes/2/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len()).as_bytes());
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut received = vec![0u8; interim.len()];
    conn.read_exact(&mut received).unwrap();
    assert_eq!(received, interim);
    conn.send(body.as_bytes());
    let response = Reader::new().response(&mut conn);
    assert_eq!(response.status, 200, "{response:?}");
    // With a chunked body too.
    conn.send(b"POST /clientes/2/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    let mut received = vec![0u8; interim.len()];
    conn.read_exact(&mut received).unwrap();
    assert_eq!(received, interim);
    conn.send(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    assert_eq!(Reader::new().response(&mut conn).status, 200);
    // A body too large is refused at once, without waiting for it and without 100 Continue.
    let rest = until_close(
        target,
        b"POST /clientes/2/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(rest.starts_with("HTTP/1.1 413 "), "{rest}");
    // An expectation the server does not know is 417.
    let rest = until_close(
        target,
        b"POST /clientes/2/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: something\r\n\r\n{}",
    );
    assert!(rest.starts_with("HTTP/1.1 417 "), "{rest}");
}

fn limits(target: &Addr) {
    // A head beyond 8 KiB: 431, even while it is still arriving.
    let mut head = b"GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    head.resize(9 * 1024, b'a');
    let rest = until_close(target, &head);
    assert!(rest.starts_with("HTTP/1.1 431 "), "{rest}");
    assert!(rest.contains("Connection: close"), "{rest}");
    // Too many header fields: 431.
    let mut head = b"GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\n".to_vec();
    for index in 0..100 {
        head.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let rest = until_close(target, &head);
    assert!(rest.starts_with("HTTP/1.1 431 "), "{rest}");
    // A declared body beyond 4 KiB: 413 before the body is sent.
    let rest = until_close(
        target,
        b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n",
    );
    assert!(rest.starts_with("HTTP/1.1 413 "), "{rest}");
    // A body of exactly 4 KiB is read (and rejected as JSON on its merits).
    let mut conn = open(target);
    let mut body = br#"{"valor":1,"tipo":"c","descricao":"big","pad":""#.to_vec();
    body.resize(4096 - 2, b'x');
    body.extend_from_slice(b"\"}");
    let mut request = format!(
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    conn.send(&request);
    assert_eq!(Reader::new().response(&mut conn).status, 200);
}

fn smuggling(target: &Addr) {
    let smuggled = "GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\n\r\n";
    // Content-Length with Transfer-Encoding: 400, close, and the hidden request is never run.
    for head in [
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\n",
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 41\r\n\r\n",
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\n",
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n",
    ] {
        let rest = until_close(target, format!("{head}0\r\n\r\n{smuggled}").as_bytes());
        assert!(rest.starts_with("HTTP/1.1 400 "), "{head:?}: {rest}");
        assert_eq!(rest.matches("HTTP/1.1").count(), 1, "{head:?}: {rest}");
    }
    // An unknown transfer coding before chunked: 501 and close. (Without a final chunked the
    // body's end is unknown: 400, see the transfer_encoding table of http.rs.)
    let rest = until_close(
        target,
        b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert!(rest.starts_with("HTTP/1.1 501 "), "{rest}");
    // Versions and request lines.
    for (request, status) in [
        ("GET /clientes/1/extrato HTTP/2.0\r\n\r\n", "505"),
        ("GET /clientes/1/extrato HTTP/1.7\r\n\r\n", "505"),
        ("GET /clientes/1/extrato FOO\r\n\r\n", "400"),
        (
            "GET  /clientes/1/extrato HTTP/1.1\r\nHost: t\r\n\r\n",
            "400",
        ),
        ("hello\r\n\r\n", "400"),
        (
            "GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
            "400",
        ),
    ] {
        let rest = until_close(target, request.as_bytes());
        assert!(
            rest.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {rest}"
        );
    }
}

fn http_1_0(target: &Addr) {
    // HTTP/1.0 closes after the response by default.
    let rest = until_close(target, b"GET /clientes/1/extrato HTTP/1.0\r\n\r\n");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("\r\nConnection: close\r\n"), "{rest}");
    // With keep-alive it stays open and says so.
    let mut conn = open(target);
    let mut reader = Reader::new();
    for _ in 0..3 {
        conn.send(b"GET /clientes/1/extrato HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = reader.response(&mut conn);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    let body = r#"{"valor":1,"tipo":"c","descricao":"um ponto 0"}"#;
    conn.send(
        format!(
            "POST /clientes/1/transacoes HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let rest = rest_until_close(&mut conn);
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
}

fn connection_close(target: &Addr) {
    let mut batch =
        b"GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    // A request after the closing one is never answered.
    batch.extend_from_slice(b"GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\n\r\n");
    let rest = until_close(target, &batch);
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("\r\nConnection: close\r\n"), "{rest}");
    assert_eq!(rest.matches("HTTP/1.1").count(), 1, "{rest}");
}

fn vanishing_client(target: &Addr) {
    for partial in [
        &b"GET /clientes/1/ext"[..],
        b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n{\"va",
    ] {
        let mut conn = open(target);
        conn.send(partial);
        drop(conn);
    }
    // The server carries on.
    assert_eq!(
        support::request(target, "GET", "/clientes/1/extrato", None).status,
        200
    );
}

/// A request head trickling in (slowloris) gets 408 and the connection closes, within the
/// request timeout (5 s) plus scheduling slack, however steadily the bytes keep coming.
fn check_slow_request(driver: Driver) {
    let (instance, _dir) = single("slow", driver);
    let mut conn = open(&instance.tcp);
    let started = Instant::now();
    let request =
        b"GET /clientes/1/extrato HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    conn.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut received = Vec::new();
    while started.elapsed() < Duration::from_secs(15) {
        if sent < request.len() {
            conn.send(&request[sent..sent + 1]);
            sent += 1;
        }
        let mut chunk = [0u8; 1024];
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => received.extend_from_slice(&chunk[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            // A reset after the answer arrived ends the exchange too.
            Err(error) if !received.is_empty() => {
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
                break;
            }
            Err(error) => panic!("{error}"),
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    // An idle keep-alive connection is not a slow request: after a served request it stays.
    let mut conn = open(&instance.unix);
    let mut reader = Reader::new();
    conn.send(&request_bytes("GET", "/clientes/1/extrato", None));
    assert_eq!(reader.response(&mut conn).status, 200);
    std::thread::sleep(Duration::from_millis(5500));
    conn.send(&request_bytes("GET", "/clientes/1/extrato", None));
    assert_eq!(reader.response(&mut conn).status, 200);
}

/// SIGTERM: the request in flight is finished (with `Connection: close`), idle connections are
/// closed, and the process exits 0 within a few seconds.
fn check_graceful_shutdown(driver: Driver) {
    let (mut instance, _dir) = single("shutdown", driver);
    let mut idle = open(&instance.tcp);
    let mut reader = Reader::new();
    idle.send(&request_bytes("GET", "/clientes/1/extrato", None));
    assert_eq!(reader.response(&mut idle).status, 200);
    let body = r#"{"valor":5,"tipo":"c","descricao":"in flight"}"#;
    let mut in_flight = open(&instance.unix);
    in_flight.send(
        format!(
            "POST /clientes/1/transacoes HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let instance = &mut instance;
    std::thread::scope(|scope| {
        let finisher = scope.spawn(move || {
            // The rest of the body arrives after the signal.
            std::thread::sleep(Duration::from_millis(300));
            in_flight.send(&body.as_bytes()[10..]);
            rest_until_close(&mut in_flight)
        });
        let status = instance.server.terminate(Duration::from_secs(10));
        assert!(status.success(), "{status:?}");
        let rest = finisher.join().unwrap();
        assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
        assert!(rest.contains("\r\nConnection: close\r\n"), "{rest}");
    });
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(idle.closes_without_more());
}
