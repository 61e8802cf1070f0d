//! `measured_impl!`: implements a storage port for an adapter with every operation timed and
//! its backend failures counted in the adapter's `stats: BackendStats` field. This is how
//! `/metrics` gets latency and errors per backend and per operation without a wrapper type
//! repeating each port's methods.

/// `measured_impl!(Port, Adapter, { async fn op(&self, ...) -> Result<T> { ... } ... })`
/// emits `#[async_trait] impl Port for Adapter` with each method measured in `self.stats`;
/// plain `fn`s after them (no IO) are emitted as they are.
macro_rules! measured_impl {
    ($port:path, $store:ty, {
        $( $(#[$attr:meta])* async fn $op:ident (&$self:ident $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty $body:block )*
        $( fn $plain:ident (&$pself:ident) -> $pret:ty $pbody:block )*
    }) => {
        #[async_trait::async_trait]
        impl $port for $store {
            $(
                $(#[$attr])*
                async fn $op(&$self $(, $arg: $ty)*) -> $ret {
                    let started = std::time::Instant::now();
                    let result: $ret = $crate::measure::Guarded::guarded($self, async { $body }).await;
                    let failed = result.as_ref().is_err_and(|e| e.is_internal());
                    $self.stats.observe(stringify!($op), started.elapsed(), failed);
                    result
                }
            )*
            $(
                fn $plain(&$pself) -> $pret $pbody
            )*
        }
    };
}

/// How an adapter runs each operation: as it is, unless its backend can be found unreachable
/// (PostgreSQL), when it refuses at once rather than waiting.
pub(crate) trait Guarded {
    fn guarded<T: Send>(
        &self,
        op: impl Future<Output = portcullis_core::error::Result<T>> + Send,
    ) -> impl Future<Output = portcullis_core::error::Result<T>> + Send {
        op
    }
}
