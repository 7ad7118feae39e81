//! `docs/openapi.yaml`, the OpenAPI description of the API written by hand, agrees with the code
//! it describes, so that the two cannot drift apart silently:
//!
//! - its paths are the resources `route::route` serves, and each path's one method is the one
//!   `Resource::allow` names (the `Allow` of its 405 too);
//! - the account id's range is exactly the ids of `contract::ACCOUNTS`, the account table of its
//!   description lists each id with its limit, and `limite` takes exactly those limits;
//! - a balance goes no lower than minus the largest limit, and `valor` is 1 to `i64::MAX`;
//! - `descricao` is 1 to `body::DESCRIPTION_CHARS_MAX` characters, in the request and in the
//!   statement, and a statement lists at most `contract::STATEMENT_TRANSACTIONS` transactions;
//! - each operation lists exactly the statuses of `response::Status` that the server can send
//!   on its path (`sent_on`, an exhaustive match: a new status must be placed there);
//! - it is OpenAPI 3.0, whose `integer` (JSON Schema draft 4's) excludes `1.0` as the server
//!   does; 3.1's includes it.
//!
//! What the server really answers is schemathesis's part: `.ci/schemathesis.sh` fuzzes the
//! running stack with this document. The second test breaks the document in a few ways and
//! expects each break to be caught, so the check itself is known to be able to fail.

use std::collections::BTreeSet;
use std::path::Path;

use rinha_testkit::assert_none;
use serde_json::{json, Value};

use rinha_api::body::DESCRIPTION_CHARS_MAX;
use rinha_api::contract::{ACCOUNTS, STATEMENT_TRANSACTIONS};
use rinha_api::response::Status;
use rinha_api::route::{route, Resource};

const DOCUMENT: &str = "../../docs/openapi.yaml";

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|error| panic!("parse {} as YAML: {error}", path.display()))
}

#[test]
fn the_document_and_the_code_agree() {
    let problems = disagreements(&document());
    assert_none("docs/openapi.yaml and the code disagree", &problems);
}

#[test]
fn a_drifted_document_is_caught() {
    /// Applies `change` to a copy of the real document and expects a disagreement.
    #[track_caller]
    fn check(what: &str, change: impl FnOnce(&mut Value)) {
        let mut document = document();
        change(&mut document);
        assert!(!disagreements(&document).is_empty(), "not caught: {what}");
    }
    let post = "/paths/~1clientes~1{id}~1transacoes/post";
    let get = "/paths/~1clientes~1{id}~1extrato/get";
    check("OpenAPI 3.1", |d| d["openapi"] = json!("3.1.0"));
    check("a route missing", |d| {
        d["paths"]
            .as_object_mut()
            .unwrap()
            .remove("/clientes/{id}/extrato");
    });
    check("a path no route serves", |d| {
        d["paths"]["/clientes/{id}"] = d["paths"]["/clientes/{id}/extrato"].clone();
    });
    check("a second method on a path", |d| {
        let path = &mut d["paths"]["/clientes/{id}/extrato"];
        path["head"] = path["get"].clone();
    });
    check("the wrong method", |d| {
        let path = d["paths"]["/clientes/{id}/extrato"]
            .as_object_mut()
            .unwrap();
        let operation = path.remove("get").unwrap();
        path.insert("post".into(), operation);
    });
    check("the wrong Allow", |d| {
        *d.pointer_mut(&format!("{get}/responses/405/headers/Allow/schema/enum"))
            .unwrap() = json!(["GET", "HEAD"]);
    });
    check("a sixth account", |d| {
        d["components"]["parameters"]["AccountId"]["schema"]["maximum"] = json!(6);
    });
    check("account 1 missing", |d| {
        d["components"]["parameters"]["AccountId"]["schema"]["minimum"] = json!(2);
    });
    check("a limit missing", |d| {
        d["components"]["schemas"]["Limit"]["enum"] = json!([100000, 80000, 1000000, 10000000]);
    });
    check("a wrong row in the account table", |d| {
        let text = d["info"]["description"].as_str().unwrap();
        d["info"]["description"] = json!(text.replace("| 2 | 80000 |", "| 2 | 8000 |"));
    });
    check("a balance allowed below every limit", |d| {
        d["components"]["schemas"]["Balance"]["minimum"] = json!(-10_000_001);
    });
    // In the request, and in the statement.
    for schema in ["TransactionRequest", "Transaction"] {
        check(&format!("a longer description in {schema}"), |d| {
            d["components"]["schemas"][schema]["properties"]["descricao"]["maxLength"] = json!(11);
        });
    }
    check("a zero valor", |d| {
        d["components"]["schemas"]["TransactionRequest"]["properties"]["valor"]["minimum"] =
            json!(0);
    });
    check("a longer statement", |d| {
        d["components"]["schemas"]["Statement"]["properties"]["ultimas_transacoes"]["maxItems"] =
            json!(11);
    });
    check("a status the server sends, missing", |d| {
        let responses = d.pointer_mut(&format!("{post}/responses")).unwrap();
        responses.as_object_mut().unwrap().remove("422");
    });
    check("a status the server never sends", |d| {
        let responses = d.pointer_mut(&format!("{get}/responses")).unwrap();
        responses["422"] = responses["404"].clone();
    });
    check("a dangling reference", |d| {
        *d.pointer_mut(&format!("{get}/responses/404/$ref")).unwrap() =
            json!("#/components/responses/Gone");
    });
}

/// Whether the server can answer `status` to a request on `resource`'s path. Framing errors
/// refuse a request before it is routed, so they can come on any path; 405 is what every other
/// method on the path gets (OpenAPI has no responses per path, so its one operation lists it).
fn sent_on(status: Status, resource: Resource) -> bool {
    let transactions = matches!(resource, Resource::Transactions(_));
    match status {
        Status::Ok | Status::NotFound | Status::MethodNotAllowed | Status::ServiceUnavailable => {
            true
        }
        // Only a transaction's body is read as JSON; a statement ignores its body.
        Status::UnprocessableContent => transactions,
        Status::BadRequest
        | Status::RequestTimeout
        | Status::ContentTooLarge
        | Status::ExpectationFailed
        | Status::HeaderFieldsTooLarge
        | Status::NotImplemented
        | Status::VersionNotSupported => true,
    }
}

/// The account a resource is about, for the resources the document must describe (an
/// exhaustive match, so that a new resource must be placed here).
fn account_of(resource: Resource) -> Option<u32> {
    match resource {
        Resource::Transactions(id) | Resource::Statement(id) => Some(id),
        Resource::NoSuchAccount | Resource::NotFound => None,
    }
}

/// One example of each resource that `account_of` says the document must describe.
const ROUTABLE: [Resource; 2] = [Resource::Transactions(1), Resource::Statement(1)];

/// Every way `document` disagrees with the code, one line each.
fn disagreements(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let version = document["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.0.") {
        problems.push(format!(
            "OpenAPI {version}: only 3.0 says that `1.0` is no integer, as the server does"
        ));
    }
    if document["info"]["version"].as_str() != Some(env!("CARGO_PKG_VERSION")) {
        problems.push(format!(
            "info.version is {}, the crate's {}",
            document["info"]["version"],
            env!("CARGO_PKG_VERSION")
        ));
    }
    check_account_table(document, &mut problems);
    let Some(paths) = document["paths"].as_object() else {
        problems.push("no paths".into());
        return problems;
    };
    let mut described = Vec::new();
    for (template, item) in paths {
        if let Some(resource) = check_path(document, template, item, &mut problems) {
            described.push(std::mem::discriminant(&resource));
        }
    }
    for resource in ROUTABLE {
        if !described.contains(&std::mem::discriminant(&resource)) {
            problems.push(format!("no path routes to {resource:?}"));
        }
    }
    problems
}

/// One path: what it routes to, its method, its account id, then its operation. Returns the
/// resource it routes to when that is one the document must describe.
fn check_path(
    document: &Value,
    template: &str,
    item: &Value,
    problems: &mut Vec<String>,
) -> Option<Resource> {
    let routed: Vec<(u32, Resource)> = ACCOUNTS
        .iter()
        .map(|&(id, _)| (id, route(&template.replace("{id}", &id.to_string()))))
        .collect();
    if let Some((id, resource)) = routed
        .iter()
        .find(|&&(id, resource)| account_of(resource) != Some(id))
    {
        problems.push(format!(
            "{template} with id {id} routes to {resource:?}, not to account {id}"
        ));
        return None;
    }
    let resource = routed[0].1;
    let methods: Vec<&str> = METHODS
        .into_iter()
        .filter(|method| item.get(*method).is_some())
        .collect();
    let allow = resource
        .allow()
        .expect("a routable resource allows a method");
    if methods != [allow.to_ascii_lowercase()] {
        problems.push(format!(
            "{template} documents {methods:?}; the server serves {allow} only"
        ));
        return Some(resource);
    }
    let operation = &item[methods[0]];
    check_account_id(document, template, item, operation, problems);
    check_statuses(document, template, resource, operation, problems);
    match resource {
        Resource::Transactions(_) => check_transactions(document, operation, problems),
        Resource::Statement(_) => check_statement(document, operation, problems),
        Resource::NoSuchAccount | Resource::NotFound => unreachable!("routes to an account"),
    }
    Some(resource)
}

/// The `id` path parameter ranges exactly over the accounts' ids.
fn check_account_id(
    document: &Value,
    template: &str,
    item: &Value,
    operation: &Value,
    problems: &mut Vec<String>,
) {
    let ids: Vec<i64> = ACCOUNTS.iter().map(|&(id, _)| i64::from(id)).collect();
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    // A range describes the ids only if they are consecutive.
    assert_eq!(
        ids,
        (first..=last).collect::<Vec<_>>(),
        "contract::ACCOUNTS"
    );
    let parameters = [&item["parameters"], &operation["parameters"]];
    let id = parameters
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|parameter| resolve(document, parameter))
        .find(|parameter| parameter["name"] == "id" && parameter["in"] == "path");
    let range = id.map(|id| {
        let schema = resolve(document, &id["schema"]).unwrap_or(&Value::Null);
        (schema["minimum"].as_i64(), schema["maximum"].as_i64())
    });
    if range != Some((Some(first), Some(last))) {
        problems.push(format!(
            "{template}: the account id ranges over {range:?}; the accounts are {first} to {last}"
        ));
    }
}

/// The operation lists exactly the statuses the server can send on its path, each response
/// exists, and the 405 names the path's one method in a required `Allow`.
fn check_statuses(
    document: &Value,
    template: &str,
    resource: Resource,
    operation: &Value,
    problems: &mut Vec<String>,
) {
    let responses = operation["responses"].as_object();
    let listed: BTreeSet<&str> = responses
        .into_iter()
        .flat_map(|responses| responses.keys().map(String::as_str))
        .collect();
    let sent: BTreeSet<&str> = Status::ALL
        .into_iter()
        .filter(|&status| sent_on(status, resource))
        .map(Status::code)
        .collect();
    if listed != sent {
        problems.push(format!(
            "{template} lists the statuses {listed:?}; the server can send {sent:?}"
        ));
    }
    for (code, response) in responses.into_iter().flatten() {
        if resolve(document, response).is_none() {
            problems.push(format!("{template}: the {code} response refers to nothing"));
        }
    }
    let allow = walk(
        document,
        operation,
        &["responses", "405", "headers", "Allow"],
    );
    let documented = json!([
        allow["required"],
        walk(document, allow, &["schema"])["enum"]
    ]);
    let expected = json!([true, [resource.allow()]]);
    if documented != expected {
        problems.push(format!(
            "{template}: the 405's Allow is {documented} (required, values), not {expected}"
        ));
    }
}

/// The transaction's request body and its 200.
fn check_transactions(document: &Value, operation: &Value, problems: &mut Vec<String>) {
    let request = json_properties(document, walk(document, operation, &["requestBody"]));
    check_transaction_fields(document, "the request", request, problems);
    let answer = json_properties(document, walk(document, operation, &["responses", "200"]));
    check_limit(document, "the transaction's", &answer["limite"], problems);
    check_balance(document, "the transaction's", &answer["saldo"], problems);
}

/// The properties of the JSON body's schema of `value` (a request body or a response).
fn json_properties<'d>(document: &'d Value, value: &'d Value) -> &'d Value {
    let path = ["content", "application/json", "schema", "properties"];
    walk(document, value, &path)
}

/// The statement's 200: balance, limit and the transactions listed.
fn check_statement(document: &Value, operation: &Value, problems: &mut Vec<String>) {
    let statement = json_properties(document, walk(document, operation, &["responses", "200"]));
    let saldo = walk(document, statement, &["saldo", "properties"]);
    check_limit(document, "the statement's", &saldo["limite"], problems);
    check_balance(document, "the statement's", &saldo["total"], problems);
    let listed = walk(document, statement, &["ultimas_transacoes"]);
    if listed["maxItems"].as_u64() != Some(STATEMENT_TRANSACTIONS as u64) {
        problems.push(format!(
            "a statement lists at most {} transactions, not {STATEMENT_TRANSACTIONS}",
            listed["maxItems"]
        ));
    }
    let transaction = walk(document, listed, &["items", "properties"]);
    check_transaction_fields(document, "a listed transaction", transaction, problems);
}

/// `valor` is 1 to `i64::MAX`; `descricao` is 1 to `DESCRIPTION_CHARS_MAX` characters.
fn check_transaction_fields(
    document: &Value,
    what: &str,
    properties: &Value,
    problems: &mut Vec<String>,
) {
    let valor = walk(document, properties, &["valor"]);
    let documented = json!([valor["minimum"], valor["maximum"]]);
    let amounts = json!([1, i64::MAX]);
    if documented != amounts {
        problems.push(format!(
            "the valor of {what} ranges over {documented}; the server takes {amounts}"
        ));
    }
    let descricao = walk(document, properties, &["descricao"]);
    let documented = json!([descricao["minLength"], descricao["maxLength"]]);
    let characters = json!([1, DESCRIPTION_CHARS_MAX]);
    if documented != characters {
        problems.push(format!(
            "the descricao of {what} is {documented} characters; the server takes {characters}"
        ));
    }
}

/// `limite` takes exactly the accounts' limits.
fn check_limit(document: &Value, whose: &str, limite: &Value, problems: &mut Vec<String>) {
    let limits: BTreeSet<i64> = ACCOUNTS.iter().map(|&(_, limit)| limit).collect();
    let documented: Option<BTreeSet<i64>> = walk(document, limite, &[])["enum"]
        .as_array()
        .and_then(|values| values.iter().map(Value::as_i64).collect());
    if documented.as_ref() != Some(&limits) {
        problems.push(format!(
            "{whose} limite takes {documented:?}; the limits are {limits:?}"
        ));
    }
}

/// A balance goes down to minus the largest limit and no further.
fn check_balance(document: &Value, whose: &str, balance: &Value, problems: &mut Vec<String>) {
    let lowest = -ACCOUNTS
        .iter()
        .map(|&(_, limit)| limit)
        .max()
        .expect("accounts exist");
    let minimum = &walk(document, balance, &[])["minimum"];
    if minimum.as_i64() != Some(lowest) {
        problems.push(format!(
            "{whose} balance goes down to {minimum}, not to {lowest}"
        ));
    }
}

/// The account table of `info.description` lists each account with its limit.
fn check_account_table(document: &Value, problems: &mut Vec<String>) {
    let description = document["info"]["description"].as_str().unwrap_or_default();
    for &(id, limit) in &ACCOUNTS {
        let row = format!("| {id} | {limit} |");
        if !description.lines().any(|line| line.trim() == row) {
            problems.push(format!("the account table has no row `{row}`"));
        }
    }
}

/// `value`, or what its `$ref` (a local JSON pointer such as `#/components/responses/NotFound`)
/// refers to; `None` for a reference to nothing.
fn resolve<'d>(document: &'d Value, value: &'d Value) -> Option<&'d Value> {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document.pointer(reference.strip_prefix('#')?),
        None => (!value.is_null()).then_some(value),
    }
}

/// Follows `keys` from `value`, resolving every `$ref` on the way (and the one at the end);
/// `null` when something is missing, which then fails every comparison.
fn walk<'d>(document: &'d Value, value: &'d Value, keys: &[&str]) -> &'d Value {
    static NULL: Value = Value::Null;
    let mut here = resolve(document, value).unwrap_or(&NULL);
    for key in keys {
        here = resolve(document, &here[*key]).unwrap_or(&NULL);
    }
    here
}
