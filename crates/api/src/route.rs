//! Request routing: which resource a path names.

/// The resources of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `/clientes/{id}/transacoes`: `POST` appends a transaction.
    Transactions(u32),
    /// `/clientes/{id}/extrato`: `GET` reads the statement.
    Statement(u32),
    /// A path naming an account id that cannot exist (not a decimal `u32`).
    NoSuchAccount,
    /// Any other path.
    NotFound,
}

impl Resource {
    /// The `Allow` header value of the resource.
    pub fn allow(self) -> Option<&'static str> {
        match self {
            Resource::Transactions(_) => Some("POST"),
            Resource::Statement(_) => Some("GET"),
            Resource::NoSuchAccount | Resource::NotFound => None,
        }
    }
}

/// Most digits of an account id: `u32::MAX` has ten.
const ACCOUNT_ID_DIGITS_MAX: usize = 10;

/// Maps a request path (query string already removed, and an absolute-form target already
/// reduced to its path by `http::parse_head`) to its resource.
pub fn route(path: &str) -> Resource {
    let Some(rest) = path.strip_prefix("/clientes/") else {
        return Resource::NotFound;
    };
    let Some((id, action)) = rest.split_once('/') else {
        return Resource::NotFound;
    };
    let known_action = matches!(action, "transacoes" | "extrato");
    if !known_action {
        return Resource::NotFound;
    }
    let Some(id) = parse_account_id(id) else {
        return Resource::NoSuchAccount;
    };
    if action == "transacoes" {
        Resource::Transactions(id)
    } else {
        Resource::Statement(id)
    }
}

/// Parses a decimal account id: ASCII digits only (no sign, no spaces), at most ten, fitting
/// in `u32`.
fn parse_account_id(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > ACCOUNT_ID_DIGITS_MAX {
        return None;
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expected: Resource) {
        assert_eq!(route(path), expected, "path {path}");
    }

    #[test]
    fn routes() {
        check("/clientes/1/transacoes", Resource::Transactions(1));
        check("/clientes/5/extrato", Resource::Statement(5));
        check("/clientes/6/extrato", Resource::Statement(6));
        check("/clientes/0/transacoes", Resource::Transactions(0));
        check("/clientes/007/extrato", Resource::Statement(7));
        check(
            "/clientes/4294967295/extrato",
            Resource::Statement(u32::MAX),
        );
        check("/clientes/4294967296/extrato", Resource::NoSuchAccount);
        check(
            "/clientes/999999999999999999999999999999/extrato",
            Resource::NoSuchAccount,
        );
        check("/clientes/abc/extrato", Resource::NoSuchAccount);
        check("/clientes/-1/extrato", Resource::NoSuchAccount);
        check("/clientes/+1/extrato", Resource::NoSuchAccount);
        check("/clientes/1.5/transacoes", Resource::NoSuchAccount);
        check("/clientes//extrato", Resource::NoSuchAccount);
        check("/clientes/%31/extrato", Resource::NoSuchAccount);
        check("/clientes/1/extrato/", Resource::NotFound);
        check("/clientes/1/Extrato", Resource::NotFound);
        check("/clientes/1", Resource::NotFound);
        check("/clientes/1/", Resource::NotFound);
        check("/clientes/1/transacoes/x", Resource::NotFound);
        check("/clientes", Resource::NotFound);
        check("/", Resource::NotFound);
        check("*", Resource::NotFound);
        // Only paths come here: http.rs routes an absolute-form target by its path.
        check("http://localhost/clientes/1/extrato", Resource::NotFound);
        check("//clientes/1/extrato", Resource::NotFound);
    }
}
