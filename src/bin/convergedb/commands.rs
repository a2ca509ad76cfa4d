//! One function per subcommand; each prints its result and returns the exit code.

use std::process::ExitCode;

use convergedb::import::{self, ImportOptions, ImportReport};
use convergedb::{Config, Db, Durability, ModelOptions, TokenizeOptions, TrainProgress};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Cli, Command, DurabilityArg, Format, ImportWhat};

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

pub(crate) fn run(cli: Cli) -> CliResult {
    let Some(path) = cli.db.clone() else {
        return Err("missing --db DIR: name the database directory".into());
    };
    let durability = match cli.durability {
        DurabilityArg::Buffered => Durability::default(),
        DurabilityArg::Sync => Durability::Sync,
    };
    // Only `import` may create a database; the read commands must not leave an empty one behind.
    let creates = matches!(cli.command, Command::Import { .. });
    // Only `stream` runs refresh workers: a one-shot command (`generate` included) must not
    // refresh other users' cached lists in the background before it exits. Users it queues
    // stay queued durably for the next process that refreshes.
    let workers = match &cli.command {
        Command::Stream { workers, .. } => *workers,
        _ => 0,
    };
    let mut config = Config::new(&path)
        .durability(durability)
        .refresh_workers(workers)
        .create_if_missing(creates)
        .accept_lost_writes(cli.accept_lost_writes);
    if let Some(urls) = &cli.cluster {
        config = config.cluster(crate::worker::cluster_config(
            urls,
            &cli.namespace,
            durability == Durability::Sync,
        ));
    } else if matches!(cli.command, Command::Worker { .. }) {
        return Err(
            "worker needs --cluster URLS: it refreshes the users of a Redis Cluster \
                    tier (the in-process workers of `stream` refresh a local database)"
                .into(),
        );
    }
    let db = config.open()?;
    let code = match cli.command {
        Command::Import {
            what,
            batch_size,
            json,
            hold_out_last,
            held_out,
        } => import_cmd(
            &db,
            what,
            batch_size,
            json,
            hold_out_last,
            held_out.as_deref(),
        )?,
        Command::Stream {
            file,
            model,
            rate,
            reads_per_event,
            limit,
            k,
            workers: _,
            warm,
            json,
        } => crate::stream::stream(
            &db,
            crate::stream::StreamArgs {
                file: &file,
                model: &model,
                rate,
                reads_per_event,
                limit,
                k,
                warm,
                json,
                refreshed_elsewhere: cli.cluster.is_some() && workers == 0,
            },
        )?,
        Command::Worker {
            model,
            name,
            batch,
            claim_idle_ms,
            sweep_ms,
            for_s,
            exit_when_idle,
            idle_s,
            json,
        } => {
            let name = name.unwrap_or_else(|| format!("worker-{}", std::process::id()));
            crate::worker::worker(
                &db,
                crate::worker::WorkerArgs {
                    model: model.as_deref(),
                    name: &name,
                    batch,
                    claim_idle_ms,
                    sweep_ms,
                    for_s,
                    exit_when_idle,
                    idle_s,
                    json,
                },
            )?;
            ExitCode::SUCCESS
        }
        Command::Stats { json } => stats(&db, json)?,
        Command::Check { json } => check(&db, json)?,
        Command::History { user, json } => history(&db, &user, json)?,
        Command::Recommend { user, k, json } => recommend(&db, &user, k, json)?,
        Command::Generate {
            user,
            model,
            k,
            beam,
            no_kv_cache,
            ort_library,
            show_prompt,
            json,
        } => {
            let mut opts = ModelOptions::new().beam_width(beam).kv_cache(!no_kv_cache);
            if let Some(lib) = ort_library {
                opts = opts.ort_library(lib);
            }
            let info = db.attach_model(&model, opts)?;
            if !json {
                println!(
                    "model {} (ONNX Runtime {}, {:?}, KV cache {}, beam {})",
                    info.model_id, info.ort_version, info.provider, info.kv_cache, info.beam_width
                );
            }
            if show_prompt && !json {
                println!("prompt: {}", db.prompt(&user)?.text);
            }
            let started = std::time::Instant::now();
            let r = db.generate(&user, k)?;
            print_recommendation(&db, &r, started.elapsed(), json)?
        }
        Command::Latency { k, rounds } => latency(&db, k, rounds)?,
        Command::Eval(args) => crate::eval::run(&db, args)?,
        Command::Embed { name, dim, seed } => {
            let started = std::time::Instant::now();
            let n = db.embed_interactions(&name, dim, seed)?;
            println!(
                "stored vector {name:?} (dimension {dim}) on {n} items in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Command::Tokenize {
            vector,
            levels,
            codes,
            iterations,
            seed,
            no_balance,
            threads,
            json,
        } => {
            let mut opts = TokenizeOptions::new(vector);
            opts.levels = levels;
            opts.codes = codes;
            opts.iterations = iterations;
            opts.seed = seed;
            opts.balance_last_level = !no_balance;
            if let Some(t) = threads {
                opts.threads = t;
            }
            tokenize(&db, &opts, json)?
        }
        Command::Sid { item, json } => sid(&db, &item, json)?,
        Command::AnnBuild { vector } => ann_build(&db, &vector)?,
        Command::AnnDrop { vector } => {
            if db.drop_ann(&vector)? {
                println!("dropped the ANN index of {vector:?}");
            } else {
                println!("vector {vector:?} had no ANN index");
            }
            ExitCode::SUCCESS
        }
        Command::SidStats { json } => sid_stats(&db, json)?,
        Command::SidImport { file } => {
            let info = db.import_tokenization(&file)?;
            println!(
                "sid table version {} ({}), fingerprint {}",
                info.version, info.source, info.fingerprint
            );
            ExitCode::SUCCESS
        }
        Command::SidExport { file } => {
            let info = db.export_tokenization(&file)?;
            println!(
                "wrote sid table version {} to {}",
                info.version,
                file.display()
            );
            ExitCode::SUCCESS
        }
    };
    db.close()?;
    Ok(code)
}

fn import_cmd(
    db: &Db,
    what: ImportWhat,
    batch_size: usize,
    json: bool,
    hold_out_last: usize,
    held_out: Option<&std::path::Path>,
) -> CliResult {
    if hold_out_last > 0 && held_out.is_none() {
        return Err(
            "--hold-out-last needs --held-out FILE to write the held-out interactions to".into(),
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    bar.set_message("importing");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let opts = ImportOptions {
        batch_size,
        progress: Some(&progress),
        hold_out_last,
    };
    let report = match what {
        ImportWhat::Items { file } => import::items_jsonl(db, &file, &opts),
        ImportWhat::Interactions { file, format } => {
            let csv = match format {
                Some(Format::Csv) => true,
                Some(Format::Jsonl) => false,
                None => file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
            };
            if csv {
                import::interactions_csv(db, &file, &opts)
            } else {
                import::interactions_jsonl(db, &file, &opts)
            }
        }
        ImportWhat::Movielens { dir } => import::movielens(db, &dir, &opts),
        ImportWhat::Amazon { dir, name } => import::amazon(db, &dir, &name, &opts),
    };
    bar.finish_and_clear();
    let report = report?;
    db.flush()?;
    if let Some(path) = held_out {
        let mut out = String::new();
        for e in &report.held_out {
            out.push_str(&serde_json::to_string(e)?);
            out.push('\n');
        }
        std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!(
            "held out {} interactions -> {}",
            report.held_out.len(),
            path.display()
        );
    }
    print_import(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_import(report: &ImportReport, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let secs = report.elapsed.as_secs_f64();
    let rate = report.interactions as f64 / secs.max(1e-9);
    println!(
        "imported {} items and {} interactions in {:.3} s ({:.0} interactions/s)",
        report.items, report.interactions, secs, rate
    );
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}

fn stats(db: &Db, json: bool) -> CliResult {
    let s = db.stats()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("items:         {} ({} deleted)", s.items, s.deleted_items);
        println!("users:         {}", s.users);
        println!(
            "interactions:  {} retained, {} recorded",
            s.interactions, s.interactions_recorded
        );
        println!("vectors:       {:?}", s.vector_dims);
        println!("kinds:         {:?}", s.kinds);
        println!("disk:          {} bytes", s.disk_bytes);
        println!("format:        v{}", s.format_version);
        match &s.sid {
            Some(sid) => println!(
                "sid table:     version {}, {} levels x {} codes, fingerprint {}",
                sid.version, sid.levels, sid.codes, sid.fingerprint
            ),
            None => println!("sid table:     none (run tokenize or sid-import)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(db: &Db, json: bool) -> CliResult {
    let report = db.check()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_clean() {
        println!(
            "ok: {} items, {} users, {} interactions checked, no problem found",
            report.items, report.users, report.interactions
        );
    } else {
        for p in &report.problems {
            println!("problem: {p}");
        }
        eprintln!("error: check found {} problem(s)", report.problems.len());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn history(db: &Db, user: &str, json: bool) -> CliResult {
    let h = db.history(user)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "user {} (history version {}, {} recorded)",
        h.user, h.version, h.recorded
    );
    for e in &h.entries {
        let kind = e.kind.as_deref().unwrap_or("-");
        let dead = if e.live { "" } else { " (deleted)" };
        println!(
            "{:>12}  {:<10} {:>6.2}  {}{}",
            e.timestamp, kind, e.weight, e.item, dead
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn recommend(db: &Db, user: &str, k: usize, json: bool) -> CliResult {
    let started = std::time::Instant::now();
    let r = db.recommend(user, k)?;
    print_recommendation(db, &r, started.elapsed(), json)
}

fn print_recommendation(
    db: &Db,
    r: &convergedb::Recommendation,
    took: std::time::Duration,
    json: bool,
) -> CliResult {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "user {} — source {:?}, history version {}, {} items in {:.1} us",
        r.user,
        r.source,
        r.history_version,
        r.items.len(),
        took.as_secs_f64() * 1e6
    );
    for (rank, item) in r.items.iter().enumerate() {
        let title = db.get_item(&item.key)?.map(|i| i.title).unwrap_or_default();
        println!(
            "{:>3}. {:<8} {:<50} score {}",
            rank + 1,
            item.key,
            title,
            item.score
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn latency(db: &Db, k: usize, rounds: usize) -> CliResult {
    let users = db.users().collect::<Result<Vec<_>, _>>()?;
    if users.is_empty() {
        return Err("the database has no users to time".into());
    }
    for user in &users {
        db.recommend(user, k)?; // warm the cache
    }
    let mut samples = Vec::with_capacity(users.len() * rounds);
    for _ in 0..rounds {
        for user in &users {
            let started = std::time::Instant::now();
            let r = db.recommend(user, k)?;
            samples.push(started.elapsed());
            std::hint::black_box(r);
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / samples.len() as f64 * 1e6;
    println!(
        "recommend(k = {k}) over {} users x {rounds} rounds: p50 {:.2} us, p99 {:.2} us, mean {:.2} us",
        users.len(),
        at(0.5),
        at(0.99),
        mean
    );
    Ok(ExitCode::SUCCESS)
}

fn tokenize(db: &Db, opts: &TokenizeOptions, json: bool) -> CliResult {
    let bar = ProgressBar::new((opts.levels * (opts.iterations + 1)) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} k-means steps ({elapsed})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    bar.set_message("tokenizing");
    let progress = |p: TrainProgress| {
        bar.set_message(format!("level {}/{}", p.level + 1, p.levels));
        bar.set_position((p.level * (opts.iterations + 1) + p.iteration) as u64);
    };
    let started = std::time::Instant::now();
    let info = db.tokenize(opts, Some(&progress));
    bar.finish_and_clear();
    let info = info?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "sid table version {}: {} levels x {} codes on {:?} in {:.2} s, fingerprint {}",
            info.version,
            info.levels,
            info.codes,
            opts.vector,
            started.elapsed().as_secs_f64(),
            info.fingerprint
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ann_build(db: &Db, vector: &str) -> CliResult {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} indexing [{bar:40}] {pos}/{len} vectors ({elapsed}, eta {eta})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let info = db.build_ann_with_progress(vector, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let info = info?;
    println!(
        "ANN index of {vector:?}: {} vectors of dimension {} (M = {}, ef_construction = {}), \
         generation {}, built and saved in {:.2} s",
        info.live,
        info.dim,
        info.max_nb_connection,
        info.ef_construction,
        info.generation,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn sid(db: &Db, item: &str, json: bool) -> CliResult {
    let Some(codes) = db.sid(item)? else {
        return Err(format!(
            "item {item:?} has no semantic ID (unknown item, or no tokenization covers it)"
        )
        .into());
    };
    if json {
        println!("{}", serde_json::json!({"item": item, "codes": codes}));
    } else {
        let tokens: Vec<String> = codes
            .iter()
            .enumerate()
            .map(|(l, c)| format!("<{}_{c}>", char::from(b'a' + l as u8)))
            .collect();
        let sharing = db.items_for_sid(&codes);
        println!("{item}: {codes:?} {}", tokens.concat());
        if sharing.len() > 1 {
            println!(
                "shared with: {:?} (ascending id; a generated tuple yields them in this order)",
                sharing
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sid_stats(db: &Db, json: bool) -> CliResult {
    let s = db.sid_stats()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "table:           version {} ({})",
        s.info.version, s.info.source
    );
    println!("fingerprint:     {}", s.info.fingerprint);
    println!(
        "shape:           {} levels x {} codes",
        s.info.levels, s.info.codes
    );
    println!(
        "items:           {} with codes, {} without",
        s.items_with_codes, s.items_without_codes
    );
    println!(
        "distinct tuples: {} (max {} items on one)",
        s.distinct_tuples, s.max_items_per_tuple
    );
    println!("collision rate:  {:.4}", s.collision_rate);
    let use_pct: Vec<String> = s
        .codebook_use
        .iter()
        .map(|u| format!("{:.1}%", u * 100.0))
        .collect();
    println!("codebook use:    {}", use_pct.join(" "));
    println!(
        "trie memory:     {} bytes ({:.1} per coded item)",
        s.trie_bytes,
        s.trie_bytes as f64 / s.items_with_codes.max(1) as f64
    );
    if let Some(e) = s.mean_relative_error {
        println!("quantization:    mean ||x - q(x)|| / ||x|| = {e:.4}");
    }
    Ok(ExitCode::SUCCESS)
}
