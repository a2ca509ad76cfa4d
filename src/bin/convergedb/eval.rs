//! `convergedb eval`: the quality of each source through the database (`convergedb::eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use convergedb::eval::{self, EvalOptions, SourceQuality};
use convergedb::{Db, ModelOptions, Source};
use indicatif::{ProgressBar, ProgressStyle};

use crate::SourceArg;

/// `convergedb eval`'s arguments.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The held-out interactions (JSONL from `import --hold-out-last N --held-out FILE`).
    pub held_out: PathBuf,
    /// Attach this model bundle first (else the attached one is used; without any, the
    /// model source is skipped).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// The cut-off K.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Sources to measure, comma-separated (default: model, popularity, and ann when an
    /// ANN index exists).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub sources: Vec<SourceArg>,
    /// Beams kept per semantic-ID level.
    #[arg(long, default_value_t = 20)]
    pub beam: usize,
    /// Serve a format-3 bundle's beam search without its hybrid re-rank.
    #[arg(long)]
    pub no_rerank: bool,
    /// Also measure the model's beam search alone (a format-3 bundle without its re-rank).
    #[arg(long)]
    pub beam_alone: bool,
    /// At most this many users (the first by key).
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A measured row and what produced it.
#[derive(serde::Serialize)]
struct Row {
    /// `model`, `model (beam alone)`, `popularity`, `ann`.
    label: String,
    #[serde(flatten)]
    quality: SourceQuality,
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

pub(crate) fn run(db: &Db, a: Args) -> CliResult {
    let events = convergedb::import::read_interactions_jsonl(&a.held_out)?;
    if events.is_empty() {
        return Err(format!(
            "{}: no held-out interactions (import with --hold-out-last N --held-out FILE)",
            a.held_out.display()
        )
        .into());
    }
    let attach = |rerank: bool| -> Result<(), Box<dyn std::error::Error>> {
        if let Some(dir) = &a.model {
            let opts = ModelOptions::new().beam_width(a.beam).rerank(rerank);
            db.attach_model(dir, opts)?;
        }
        Ok(())
    };
    attach(!a.no_rerank)?;
    let info = db.model_info();
    let mut sources: Vec<Source> = a
        .sources
        .iter()
        .map(|s| match s {
            SourceArg::Model => Source::Model,
            SourceArg::Popularity => Source::Popularity,
            SourceArg::Ann => Source::Ann,
        })
        .collect();
    if sources.is_empty() {
        if info.is_some() {
            sources.push(Source::Model);
        }
        sources.push(Source::Popularity);
        if !db.ann_info().is_empty() {
            sources.push(Source::Ann);
        }
    }
    let mut opts = EvalOptions::new();
    opts.k = a.k;
    opts.max_users = a.users;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} evaluating [{bar:40}] {pos}/{len} ({eta})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let reranked = info.as_ref().is_some_and(|i| i.rerank_candidates > 0);
    let model_label = if reranked {
        "model (hybrid re-rank)"
    } else {
        "model"
    };
    let mut rows = Vec::new();
    let mut report = None;
    for &source in &sources {
        opts.sources = vec![source];
        let r = eval::evaluate(db, &events, &opts, Some(&progress))?;
        let label = match source {
            Source::Model => model_label,
            Source::Popularity => "popularity",
            Source::Ann => "ann",
            _ => "other",
        };
        rows.extend(r.rows.iter().cloned().map(|quality| Row {
            label: label.to_string(),
            quality,
        }));
        if source == Source::Model && reranked && a.beam_alone {
            attach(false)?;
            let beam = eval::evaluate(db, &events, &opts, Some(&progress))?;
            rows.extend(beam.rows.into_iter().map(|quality| Row {
                label: "model (beam alone)".into(),
                quality,
            }));
            attach(true)?;
        }
        report = Some(r);
    }
    bar.finish_and_clear();
    let Some(report) = report else {
        return Err("no source to measure".into());
    };
    if a.json {
        let out = serde_json::json!({
            "k": report.k,
            "users": report.users,
            "unknown_targets": report.unknown_targets,
            "model": info,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let k = report.k;
    println!(
        "{} users (target: each user's first held-out interaction; {} with an unknown item skipped), full ranking",
        report.users, report.unknown_targets
    );
    println!(
        "{:<24} {:<9} {:>10} {:>10} {:>9}",
        "source",
        "history",
        format!("Recall@{k}"),
        format!("NDCG@{k}"),
        "seconds"
    );
    for r in &rows {
        let q = &r.quality;
        println!(
            "{:<24} {:<9} {:>10.4} {:>10.4} {:>9.1}",
            r.label,
            if q.exclude_history {
                "excluded"
            } else {
                "kept"
            },
            q.recall,
            q.ndcg,
            q.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
