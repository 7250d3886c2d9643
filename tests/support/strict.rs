//! The strict Timestream Write endpoint (`tools/strict-timestream`) in the
//! test process, on a runtime the test's other async code shares.

use super::measures::{sorted, M};
use strict_timestream::{Config, Server, ServerHandle, TableConfig};

pub struct Strict {
    handle: Option<ServerHandle>,
    rt: tokio::runtime::Runtime,
}

impl Strict {
    /// On a free port, with `tables` and the fault generator's `seed`.
    pub fn start(tables: Vec<TableConfig>, seed: u64) -> Strict {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt
            .block_on(Server::start(
                "127.0.0.1:0".parse().unwrap(),
                Config {
                    tables,
                    seed,
                    ..Default::default()
                },
            ))
            .unwrap();
        Strict {
            handle: Some(handle),
            rt,
        }
    }

    pub fn h(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Everything `database.table` holds, as sorted measures.
    pub fn stored(&self, database: &str, table: &str) -> Vec<M> {
        sorted(
            self.h()
                .records(database, table)
                .into_iter()
                .map(|m| {
                    (
                        m.dimensions,
                        m.measure_name,
                        m.sub_measure,
                        m.time_ns,
                        m.value,
                    )
                })
                .collect(),
        )
    }
}

impl Drop for Strict {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}
