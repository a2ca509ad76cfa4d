//! The `convergedb` command-line tool: import data, inspect and check a database, ask for
//! recommendations. Errors print as one line on stderr with a non-zero exit code.

mod commands;
mod eval;
mod stream;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "convergedb",
    version,
    about = "An embedded database for LLM-based generative recommendation"
)]
struct Cli {
    /// Database directory (created if missing, unless the command only reads).
    #[arg(long, global = true, value_name = "DIR")]
    db: Option<PathBuf>,
    /// When writes reach the disk.
    #[arg(long, global = true, value_enum, default_value_t = DurabilityArg::Buffered)]
    durability: DurabilityArg,
    /// Open even when writes acknowledged as durable are missing after recovery (the storage
    /// engine's log was damaged): go on with what was recovered (see docs/design.md).
    #[arg(long, global = true)]
    accept_lost_writes: bool,
    /// Keep the per-user tier (histories, cached lists, refresh queue) in this Redis Cluster:
    /// node URLs, comma-separated (redis://host:port,...). The --db directory keeps the
    /// catalog, codes, indexes and model. With --durability sync a record returns once a
    /// replica holds it.
    #[arg(long, global = true, value_name = "URLS")]
    cluster: Option<String>,
    /// The cluster key namespace of this database (with --cluster).
    #[arg(long, global = true, default_value = "convergedb")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Background flush every 500 ms.
    Buffered,
    /// Flush before each write returns.
    Sync,
}

#[derive(Subcommand)]
enum Command {
    /// Import items and interactions.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
        /// Records per atomic batch.
        #[arg(long, default_value_t = 100_000, global = true)]
        batch_size: usize,
        /// Print the import report as JSON.
        #[arg(long, global = true)]
        json: bool,
        /// Hold out the last N interactions of each user (2: the training pipeline's
        /// leave-one-out split) instead of recording them; see --held-out.
        #[arg(long, default_value_t = 0, global = true, value_name = "N")]
        hold_out_last: usize,
        /// Write the held-out interactions here as JSONL, in timestamp order (for `stream`).
        #[arg(long, global = true, value_name = "FILE")]
        held_out: Option<PathBuf>,
    },
    /// Replay interactions (JSONL) as a live stream with a model attached, reading
    /// recommendations as it goes: cache hits by source, queue depth, refresh throughput and
    /// freshness lag, live and as a summary.
    Stream {
        /// The interactions to replay (JSONL, e.g. from `import --held-out`).
        file: PathBuf,
        /// The model bundle folder.
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Interactions per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// `recommend` calls after each interaction (the acting user first, then random users).
        #[arg(long, default_value_t = 4)]
        reads_per_event: usize,
        /// Replay only the first N events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Items per recommendation.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Background refresh workers (default: one per core).
        #[arg(long, default_value_t = convergedb::RefreshParams::default().workers)]
        workers: usize,
        /// First compute every user's list (wait for the queue to drain) before streaming.
        #[arg(long)]
        warm: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts and settings. Like every command, opening the database first repairs what can be
    /// rebuilt: an ANN dump that fails its checksum is rebuilt from the store and rewritten, and
    /// empty leftover snapshot files of a failed write are removed (docs/design.md, "Files").
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify every invariant; exits 1 when a problem is found.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A user's history, oldest first.
    History {
        /// The user's key.
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recommendations for a user.
    Recommend {
        /// The user's key.
        user: String,
        /// How many items.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate recommendations for a user with a model bundle (runs the LLM now). Attaching
    /// records the bundle's model id in the database (cached lists of another model become
    /// stale and their users are queued); no cached list is refreshed by this command.
    Generate {
        /// The user's key.
        user: String,
        /// The model bundle folder (manifest.json, model.onnx, tokenizer.json, tokenization.json).
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// How many items.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Beams kept per semantic-ID level.
        #[arg(long, default_value_t = 20)]
        beam: usize,
        /// Re-run the whole sequence at every level instead of using the KV cache.
        #[arg(long)]
        no_kv_cache: bool,
        /// The ONNX Runtime library (default: ORT_DYLIB_PATH, then where ./scripts/setup-ort installs it).
        #[arg(long, value_name = "FILE")]
        ort_library: Option<PathBuf>,
        /// Print the prompt the model sees.
        #[arg(long)]
        show_prompt: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store behavioural item vectors sketched from the interactions (for tokenize).
    Embed {
        /// The vector name to write.
        #[arg(long, default_value = "cf")]
        name: String,
        /// Dimension.
        #[arg(long, default_value_t = 64)]
        dim: usize,
        /// Seed of the random projection.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Train semantic IDs (residual k-means) on a stored item vector: a new sid-table version.
    Tokenize {
        /// The item vector to quantize.
        #[arg(long)]
        vector: String,
        /// Code levels.
        #[arg(long, default_value_t = 4)]
        levels: usize,
        /// Codes per level.
        #[arg(long, default_value_t = 256)]
        codes: usize,
        /// Lloyd iterations per level.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Seed of the k-means++ initialisation.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Plain nearest-code assignment at the last level (more collisions).
        #[arg(long)]
        no_balance: bool,
        /// Worker threads (default: all cores; the result does not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the table description as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The semantic ID of an item.
    Sid {
        /// The item's key.
        item: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Collision rate, codebook use and quantization error of the current tokenization.
    SidStats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a tokenization file or a LETTER *.index.json as a new sid-table version.
    SidImport {
        /// The file.
        file: PathBuf,
    },
    /// Export the current tokenization and every item's codes.
    SidExport {
        /// The file to write.
        file: PathBuf,
    },
    /// Build (or rebuild) the ANN index over an item vector, with a progress bar.
    AnnBuild {
        /// The item vector to index.
        #[arg(long)]
        vector: String,
    },
    /// Drop the ANN index of an item vector (its files and manifest).
    AnnDrop {
        /// The item vector whose index to drop.
        #[arg(long)]
        vector: String,
    },
    /// Refresh lists for users whose histories live in a Redis Cluster (docs/cluster.md): take
    /// queue entries, generate with this database's catalog and model, compare-and-swap the
    /// lists into the cluster. Run any number, on any hosts, each with its own --name.
    Worker {
        /// Attach this model bundle first (else the attached one is used).
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// This worker's consumer name (unique among live workers; default worker-<pid>).
        #[arg(long)]
        name: Option<String>,
        /// Users per model batch.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Take over another worker's entries unacknowledged for this long.
        #[arg(long, default_value_t = 10_000)]
        claim_idle_ms: u64,
        /// Re-notify users whose pending marker is this old, and trim the queue, this often.
        #[arg(long, default_value_t = 5_000)]
        sweep_ms: u64,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        for_s: Option<f64>,
        /// Stop once the queue has been empty for --idle-s seconds.
        #[arg(long)]
        exit_when_idle: bool,
        /// How long the queue must stay empty for --exit-when-idle.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        idle_s: f64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Quality through the database: Recall@K and NDCG@K of each source for every user of a
    /// held-out file (the first held-out interaction of a user is the target; import with
    /// `--hold-out-last 1` for the test split), with and without the history excluded.
    Eval(eval::Args),
    /// Time `recommend` over every user (warm cache): p50, p99 and mean latency.
    Latency {
        /// How many items per call.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Passes over all users.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Items from a JSONL file (one item object per line).
    Items {
        /// The JSONL file.
        file: PathBuf,
    },
    /// Interactions from a JSONL or CSV file (format from the extension unless --format).
    Interactions {
        /// The file.
        file: PathBuf,
        /// File format.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// MovieLens-100K from RecBole's atomic files (ml-100k.item, ml-100k.inter).
    Movielens {
        /// The ml-100k folder (recbole/dataset_example/ml-100k in the recbole wheel).
        dir: PathBuf,
    },
    /// An LC-Rec/LETTER Amazon dataset (<Name>.inter.json, optional <Name>.item.json).
    Amazon {
        /// The folder holding the files.
        dir: PathBuf,
        /// The dataset name, e.g. Instruments.
        #[arg(long)]
        name: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceArg {
    Model,
    Popularity,
    Ann,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
