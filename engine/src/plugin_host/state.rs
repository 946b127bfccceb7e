//! The per-call store state of component plugins and the host side of the
//! `log` and `db` imports.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::hookwise::plugin::{db, log, types};
use super::db::DbCallState;
use super::http::HttpHooks;
use super::limits::{CappedPipe, LogLevel, LogSink, LogStream, MemoryLimiter};

/// Everything one call's `Store` owns.
pub(crate) struct StoreState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http_ctx: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: HttpHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) logs: LogSink,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    pub(crate) db: DbCallState,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.logs.push(level, LogStream::Log, &message);
    }
}

impl db::Host for StoreState {
    async fn execute(
        &mut self,
        connection: String,
        sql: String,
        params: String,
    ) -> Result<String, String> {
        self.db.execute(connection, sql, params).await
    }
}
