//! Keyset paging, the one way every list pages: a page is the rows after the last key the
//! previous page ended on, in key order, one more asked for than the page holds to learn
//! whether another follows.

use mandate_domain::paging::PageRequest;
use sea_orm::sea_query::Value;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use crate::Result;

/// The page of `select`, in the order of `column`, that starts after `after`, with the key
/// (`key`, the same column's value as text) the next page starts after.
pub(crate) async fn keyset_page<E, C>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    column: C,
    after: Option<impl Into<Value>>,
    page: &PageRequest,
    key: impl Fn(&E::Model) -> String,
) -> Result<(Vec<E::Model>, Option<String>)>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    let mut select = select.order_by_asc(column).limit(page.size + 1);
    if let Some(after) = after {
        select = select.filter(column.gt(after));
    }
    let rows = select.all(db).await?;
    Ok(split_page(rows, page.size, key))
}

/// Cuts the one extra row fetched to learn whether another page follows.
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    size: u64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() > size {
        rows.truncate(size);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}
