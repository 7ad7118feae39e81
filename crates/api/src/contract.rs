//! The challenge's fixed data, written once (docs/api.md): the accounts that exist from the
//! first start and how many transactions a statement lists. The server hands them to espora,
//! and the tests and the load client take them from here.

/// The five accounts, with their credit limits in cents; any other id answers 404.
pub const ACCOUNTS: [(u32, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// How many of the most recent transactions a statement lists, newest first.
pub const STATEMENT_TRANSACTIONS: usize = 10;

/// The credit limit of an account, if it exists.
pub fn limit(account_id: u32) -> Option<i64> {
    ACCOUNTS
        .iter()
        .find(|&&(id, _)| id == account_id)
        .map(|&(_, limit)| limit)
}
