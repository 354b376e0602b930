//! Statement parameters that must not reach a log.
//!
//! tokio-postgres logs every statement's parameters at DEBUG through the
//! `log` crate, with their `Debug` output; a host that bridges `log` into its
//! tracing subscriber would write each stored hash into its logs. A
//! parameter wrapped in [`Hidden`] is sent exactly as the wrapped value, and
//! logged as `[REDACTED]`.

use std::error::Error;
use std::fmt;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use crate::error::Redacted;

/// A statement parameter whose `Debug` (what tokio-postgres logs) redacts it.
pub(crate) struct Hidden<T>(pub(crate) T);

impl<T> fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Redacted, f)
    }
}

impl<T: ToSql> ToSql for Hidden<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>>
    where
        Self: Sized,
    {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool
    where
        Self: Sized,
    {
        T::accepts(ty)
    }

    fn encode_format(&self, ty: &Type) -> Format {
        self.0.encode_format(ty)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_the_bytes_go_out_unchanged() {
        let secret: &[u8] = &[0xde, 0xad, 0xbe, 0xef];
        let hidden = Hidden(secret);
        let shown = format!("{hidden:?} {:?}", &hidden as &dyn ToSql);
        assert_eq!(shown, "[REDACTED] [REDACTED]");
        let (mut plain, mut wrapped) = (BytesMut::new(), BytesMut::new());
        secret.to_sql(&Type::BYTEA, &mut plain).unwrap();
        hidden.to_sql_checked(&Type::BYTEA, &mut wrapped).unwrap();
        assert_eq!(plain, wrapped);
        assert!(<Hidden<&[u8]> as ToSql>::accepts(&Type::BYTEA));
        assert!(!<Hidden<&[u8]> as ToSql>::accepts(&Type::TEXT));
        assert!(hidden.to_sql_checked(&Type::TEXT, &mut wrapped).is_err());
    }
}
