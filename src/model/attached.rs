//! An attached model: the validated bundle, its prompter and a pool of sessions.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::beam::{self, Answer, Request, TokenLayout, Widths};
use super::bundle::Bundle;
use super::library::{self, Runtime};
use super::manifest::{Manifest, Rerank};
use super::options::{ExecutionProvider, ModelOptions};
use super::prefix_scorer::SharedPrefixScorer;
use super::prefix_session::{self, PrefixSessions};
use super::prompt::Prompter;
use super::scorer::OrtScorer;
use super::session::{self, LmSession};
use super::user_session::{self, UserSession};
use crate::sid::Trie;
use crate::Result;

/// What is attached: reported by `Db::model_info` and `stats()`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// The bundle's model id (stamped on generated lists).
    pub model_id: String,
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The dataset the bundle names (informative).
    pub dataset: Option<String>,
    /// The sid-table fingerprint the model was trained on.
    pub sid_fingerprint: String,
    /// The ONNX Runtime library in use and its version.
    pub ort_library: PathBuf,
    /// ONNX Runtime version of that library.
    pub ort_version: String,
    /// The execution provider in use (registered with `error_on_failure`, so this is what runs).
    pub provider: ExecutionProvider,
    /// Whether decoding uses the graph's KV cache.
    pub kv_cache: bool,
    /// The bundle's format version: 1 (a KV cache per beam), 2 (shared-prefix decoding) or 3
    /// (format 2 and the hybrid re-rank).
    pub bundle_format: u32,
    /// Beams kept per level.
    pub beam_width: usize,
    /// Users per model run.
    pub max_batch: usize,
    /// ONNX Runtime intra-op threads per session (0 = its default).
    pub intra_threads: usize,
    /// History items a prompt shows at most.
    pub max_history: usize,
    /// Format 3's hybrid re-rank in use: beam candidates re-scored per user (0: the beam
    /// search alone, for bundles without a re-rank or with `ModelOptions::rerank(false)`).
    pub rerank_candidates: usize,
    /// The fusion weight of the dense score (when the re-rank is in use).
    pub rerank_weight: Option<f64>,
    /// The stored vector the dense score reads (when the re-rank is in use).
    pub rerank_vector: Option<String>,
    /// Sessions created so far (one per concurrent caller or worker).
    pub sessions: usize,
    /// Users generated for since attaching.
    pub users_generated: u64,
    /// Wall time of those generations (prompts excluded: search + ONNX Runtime), seconds.
    pub generate_seconds: f64,
    /// The part of it inside ONNX Runtime, seconds; the rest is the beam search and tensor
    /// copies.
    pub ort_seconds: f64,
}

pub(crate) struct Model {
    /// The bundle folder.
    pub dir: PathBuf,
    info: Mutex<ModelInfo>,
    pub manifest: Manifest,
    engine: Engine,
}

/// What generates: ONNX Runtime over the bundle's graph, or (fuzzing only) a deterministic
/// test double that needs no library, no bundle and fits any tokenization.
enum Engine {
    Ort(Box<OrtEngine>),
    #[cfg(feature = "fuzzing")]
    Fake(super::fake::FakeEngine),
}

/// The bundle's graph on ONNX Runtime: the prompter and a pool of sessions.
struct OrtEngine {
    prompter: Prompter,
    onnx: PathBuf,
    /// Format 2: the decoding-step graph.
    decode: Option<PathBuf>,
    options: ModelOptions,
    runtime: &'static Runtime,
    pool: Mutex<Vec<Sessions>>,
    /// Format 3 with the re-rank on: the user encoder and its pool of sessions.
    user: Option<UserEncoder>,
}

struct UserEncoder {
    path: PathBuf,
    dim: usize,
    pool: Mutex<Vec<UserSession>>,
}

/// What one caller runs: format 1's single session or format 2's pair.
enum Sessions {
    PerBeam(LmSession),
    SharedPrefix(Box<PrefixSessions>),
}

impl Sessions {
    fn open(
        rt: &Runtime,
        onnx: &Path,
        decode: Option<&Path>,
        m: &Manifest,
        opts: &ModelOptions,
    ) -> Result<Sessions> {
        Ok(match decode {
            None => Sessions::PerBeam(session::open(rt, onnx, m, opts)?),
            Some(d) => {
                Sessions::SharedPrefix(Box::new(prefix_session::open(rt, onnx, d, m, opts)?))
            }
        })
    }

    fn has_cache(&self) -> bool {
        match self {
            Sessions::PerBeam(s) => s.has_cache,
            Sessions::SharedPrefix(_) => true,
        }
    }

    fn ort_nanos(&self) -> u64 {
        match self {
            Sessions::PerBeam(s) => s.ort_nanos,
            Sessions::SharedPrefix(s) => s.ort_nanos,
        }
    }
}

impl Model {
    /// Validates the bundle, loads ONNX Runtime and builds a first session (which checks the
    /// graph).
    pub fn load(dir: &Path, options: ModelOptions) -> Result<Model> {
        options.validate()?;
        // The bundle first: a bad folder is reported without loading ONNX Runtime.
        let bundle = Bundle::open(dir)?;
        let runtime = library::load(options.ort_library.as_deref())?;
        let first = Sessions::open(
            runtime,
            &bundle.onnx_path,
            bundle.decode_path.as_deref(),
            &bundle.manifest,
            &options,
        )?;
        let rerank = bundle.manifest.rerank.clone().filter(|_| options.rerank);
        let user = match (&rerank, &bundle.user_path) {
            (Some(r), Some(path)) => {
                let first = user_session::open(runtime, path, r.max_history, &options)?;
                Some(UserEncoder {
                    path: path.clone(),
                    dim: first.dim,
                    pool: Mutex::new(vec![first]),
                })
            }
            _ => None,
        };
        let info = ModelInfo {
            model_id: bundle.manifest.model_id.clone(),
            bundle: bundle.dir.clone(),
            dataset: bundle.manifest.dataset.clone(),
            sid_fingerprint: bundle.manifest.sid.fingerprint.clone(),
            ort_library: runtime.path.clone(),
            ort_version: runtime.version.clone(),
            provider: options.provider,
            kv_cache: options.use_kv_cache && first.has_cache(),
            bundle_format: bundle.manifest.format_version,
            beam_width: options.beam_width,
            max_batch: options.max_batch,
            intra_threads: options.intra_threads,
            max_history: bundle.manifest.prompt.max_history,
            rerank_candidates: rerank.as_ref().map_or(0, |r| r.candidates),
            rerank_weight: rerank.as_ref().map(|r| r.weight),
            rerank_vector: rerank.as_ref().map(|r| r.vector.clone()),
            sessions: 1,
            users_generated: 0,
            generate_seconds: 0.0,
            ort_seconds: 0.0,
        };
        Ok(Model {
            dir: bundle.dir.clone(),
            info: Mutex::new(info),
            engine: Engine::Ort(Box::new(OrtEngine {
                prompter: Prompter::new(&bundle.manifest, bundle.tokenizer),
                onnx: bundle.onnx_path,
                decode: bundle.decode_path,
                options,
                runtime,
                pool: Mutex::new(vec![first]),
                user,
            })),
            manifest: bundle.manifest,
        })
    }

    /// The deterministic test double (see `fake.rs`).
    #[cfg(feature = "fuzzing")]
    pub fn fake(model_id: &str) -> Result<Model> {
        let (manifest, info, engine) = super::fake::FakeEngine::build(model_id)?;
        Ok(Model {
            dir: PathBuf::from("(test generator)"),
            info: Mutex::new(info),
            manifest,
            engine: Engine::Fake(engine),
        })
    }

    /// Whether the model can generate under the database's current tokenization (its
    /// fingerprint, `None` without one).
    pub fn fits(&self, current: Option<&str>) -> bool {
        match &self.engine {
            Engine::Ort(_) => current == Some(self.fingerprint()),
            #[cfg(feature = "fuzzing")]
            Engine::Fake(_) => current.is_some(),
        }
    }

    /// History items a prompt shows at most.
    pub fn max_history(&self) -> usize {
        match &self.engine {
            Engine::Ort(o) => o.prompter.max_history(),
            #[cfg(feature = "fuzzing")]
            Engine::Fake(f) => f.max_history(),
        }
    }

    /// The prompt for a history's codes (oldest first): its text and token ids.
    pub fn prompt<C: AsRef<[u16]>>(&self, codes: &[C]) -> Result<(String, Vec<i64>)> {
        match &self.engine {
            Engine::Ort(o) => {
                let text = o.prompter.render(codes);
                let ids = o.prompter.encode(&text)?;
                Ok((text, ids))
            }
            #[cfg(feature = "fuzzing")]
            Engine::Fake(f) => Ok(f.prompt(codes)),
        }
    }

    /// Runs the constrained search for `requests` over `trie` (`codes`: codes per level of
    /// the current tokenization).
    pub fn generate(
        &self,
        trie: &Trie,
        codes: usize,
        requests: &[Request<'_>],
    ) -> Result<Vec<Answer>> {
        match &self.engine {
            Engine::Ort(o) => {
                let _ = codes; // the bundle's manifest fixes the token layout
                let mut session = self.take_session(o)?;
                let result = self.run(o, &mut session, trie, requests);
                o.pool.lock().push(session);
                result
            }
            #[cfg(feature = "fuzzing")]
            Engine::Fake(f) => f.generate(trie, codes, requests),
        }
    }

    /// The re-rank in use (format 3, `ModelOptions::rerank` on) and the user encoder's vector
    /// width.
    pub fn rerank(&self) -> Option<(&Rerank, usize)> {
        match &self.engine {
            Engine::Ort(o) => match (&self.manifest.rerank, &o.user) {
                (Some(r), Some(u)) => Some((r, u.dim)),
                _ => None,
            },
            #[cfg(feature = "fuzzing")]
            Engine::Fake(_) => None,
        }
    }

    /// The user encoder's vectors of `histories` (each: its items' stored vectors, oldest
    /// first). Only with a re-rank in use.
    pub fn user_vectors(&self, histories: &[Vec<&[f32]>]) -> Result<Vec<Vec<f32>>> {
        let o = match &self.engine {
            Engine::Ort(o) => o,
            #[cfg(feature = "fuzzing")]
            Engine::Fake(_) => {
                return Err(crate::Error::Inference(
                    "this model has no user encoder".into(),
                ))
            }
        };
        let Some(u) = &o.user else {
            return Err(crate::Error::Inference(
                "this model has no user encoder".into(),
            ));
        };
        let popped = u.pool.lock().pop();
        let mut session = match popped {
            Some(s) => s,
            None => {
                let positions = self.manifest.rerank.as_ref().map_or(1, |r| r.max_history);
                user_session::open(o.runtime, &u.path, positions, &o.options)?
            }
        };
        let before = session.ort_nanos;
        let result = session.user_vectors(histories);
        let spent = session.ort_nanos - before;
        u.pool.lock().push(session);
        let mut info = self.info.lock();
        info.ort_seconds += spent as f64 * 1e-9;
        drop(info);
        result
    }

    pub fn info(&self) -> ModelInfo {
        self.info.lock().clone()
    }

    pub fn fingerprint(&self) -> &str {
        &self.manifest.sid.fingerprint
    }

    /// A session for one caller: from the pool, or a new one.
    fn take_session(&self, o: &OrtEngine) -> Result<Sessions> {
        if let Some(s) = o.pool.lock().pop() {
            return Ok(s);
        }
        let s = Sessions::open(
            o.runtime,
            &o.onnx,
            o.decode.as_deref(),
            &self.manifest,
            &o.options,
        )?;
        self.info.lock().sessions += 1;
        Ok(s)
    }

    /// Runs the constrained search for `requests` on `session`, in batches of `max_batch`
    /// users of similar prompt lengths (the requests sorted by prompt length, so a batch pads
    /// its prompts little); the answers come back in the requests' order.
    fn run(
        &self,
        o: &OrtEngine,
        session: &mut Sessions,
        trie: &Trie,
        requests: &[Request<'_>],
    ) -> Result<Vec<Answer>> {
        let options = &o.options;
        let layout = TokenLayout {
            first_token_id: self.manifest.sid.first_token_id,
            codes: self.manifest.sid.codes,
        };
        let pad = i64::from(self.manifest.special_tokens.pad);
        // The re-rank takes the beam's first `candidates` items: the last level keeps as many
        // tuples (every tuple names at least one item).
        let widths = Widths {
            beam: options.beam_width,
            last: match (&self.manifest.rerank, &o.user) {
                (Some(r), Some(_)) => options.beam_width.max(r.candidates),
                _ => options.beam_width,
            },
        };
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| requests[i].prompt.len());
        let mut out = vec![Answer::default(); requests.len()];
        let started = std::time::Instant::now();
        let ort_before = session.ort_nanos();
        for chunk in order.chunks(options.max_batch) {
            let batch: Vec<Request<'_>> = chunk
                .iter()
                .map(|&i| Request {
                    prompt: requests[i].prompt.clone(),
                    exclude: requests[i].exclude,
                    k: requests[i].k,
                })
                .collect();
            let answers = match session {
                Sessions::PerBeam(s) => {
                    let mut scorer = OrtScorer::new(s, options.use_kv_cache, pad);
                    beam::search(&mut scorer, trie, layout, widths, &batch)?
                }
                Sessions::SharedPrefix(s) => {
                    let mut scorer = SharedPrefixScorer::new(s, options.use_kv_cache, pad);
                    beam::search(&mut scorer, trie, layout, widths, &batch)?
                }
            };
            for (&i, answer) in chunk.iter().zip(answers) {
                out[i] = answer;
            }
        }
        let mut info = self.info.lock();
        info.users_generated += requests.len() as u64;
        info.generate_seconds += started.elapsed().as_secs_f64();
        info.ort_seconds += (session.ort_nanos() - ort_before) as f64 * 1e-9;
        Ok(out)
    }
}
