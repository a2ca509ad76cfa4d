//! The Redis Cluster the cluster tests run on: the one named by `CONVERGEDB_REDIS_CLUSTER`
//! (comma-separated URLs; `./scripts/test` starts one), else a 3-master loopback cluster this
//! test binary starts with `scripts/redis-cluster`, which a watchdog stops when the binary
//! exits (even if it is killed).

use std::sync::OnceLock;

use convergedb::cluster::{ClusterConfig, ClusterDurability, ClusterTier};

pub fn urls() -> Vec<String> {
    static URLS: OnceLock<Vec<String>> = OnceLock::new();
    URLS.get_or_init(|| {
        let urls = match std::env::var("CONVERGEDB_REDIS_CLUSTER") {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-cluster");
                let out = std::process::Command::new(script)
                    .args(["start", "--owner", &std::process::id().to_string()])
                    .output()
                    .expect("run scripts/redis-cluster");
                assert!(
                    out.status.success(),
                    "scripts/redis-cluster start failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                std::fs::read_to_string(format!("{dir}/urls")).expect("cluster urls")
            }
        };
        urls.trim().split(',').map(str::to_string).collect()
    })
    .clone()
}

/// This process's namespace for test `name` (tests share one cluster).
pub fn namespace(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}

/// A Buffered tier in the test's own namespace, after `tweak`.
pub fn tier(name: &str, tweak: impl FnOnce(&mut ClusterConfig)) -> ClusterTier {
    let mut config = ClusterConfig::new(urls());
    config.namespace = namespace(name);
    config.durability = ClusterDurability::Buffered;
    tweak(&mut config);
    ClusterTier::connect(config).expect("connect to the test cluster")
}
