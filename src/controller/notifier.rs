//! Delivers AccessRequest notices to webhook receivers, away from reconciliation: the reconciler
//! records a notice as due (`notices`) and hands it here; a slow, failing or hanging receiver
//! holds up only its own deliveries. Each is tried with backoff for `DELIVERY_WINDOW`, every
//! failure logged and counted, then delivered or given up, and the outcome recorded. The
//! webhook URL is read from its Secret for each attempt and appears nowhere: not in logs, not
//! in events, not in the record, not in errors.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::{Semaphore, mpsc};

use super::context::Context;
use super::notices::{Due, NoticeStore, Settled};
use crate::api::notify::Receiver;
use crate::api::request::State;
use crate::request::notice::{backoff, payload};

/// How long a notice is tried, from its first attempt: past that it is given up (a request
/// that waited this long has been seen some other way, or its moment is gone).
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// One attempt's limit, connecting included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts under way at once; the rest wait their turn.
const AT_ONCE: usize = 16;

/// One receiver's copy of one notice, to deliver.
pub struct Job {
    pub uid: String,
    /// `namespace/name`, for logs.
    pub request: String,
    /// Where the receiver's Secret is.
    pub connector_namespace: String,
    pub connector: String,
    pub receiver: Receiver,
    pub due: Due,
}

/// A request's notices to one receiver go in order, one at a time: a receiver that was down
/// gets Pending before Active once it is back.
type Lane = (String, String);

#[derive(Default)]
struct Lanes {
    /// The lanes with a delivery under way, and what waits behind it.
    waiting: HashMap<Lane, VecDeque<Job>>,
    /// Every notice under way or waiting, by lane and state.
    known: HashSet<(Lane, State)>,
}

pub struct Notifier {
    jobs: mpsc::UnboundedSender<Job>,
    queue: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    lanes: Mutex<Lanes>,
    /// Requests whose notice record was read since this process started.
    looked_at: Mutex<HashSet<String>>,
}

impl Default for Notifier {
    fn default() -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        Self {
            jobs,
            queue: Mutex::new(Some(queue)),
            lanes: Mutex::default(),
            looked_at: Mutex::default(),
        }
    }
}

fn lane(job: &Job) -> Lane {
    (job.uid.clone(), job.receiver.name.clone())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// Whether this is the first look at the request's notices since the process started (what
    /// an earlier process left due is sent then); marks it looked at.
    pub fn first_look(&self, uid: &str) -> bool {
        lock(&self.looked_at).insert(uid.to_string())
    }

    pub fn forget(&self, uid: &str) {
        lock(&self.looked_at).remove(uid);
    }

    /// Hands a notice over for delivery, behind the request's earlier notices to the same
    /// receiver, unless it is under way or waiting already.
    pub fn send(&self, job: Job) {
        let lane = lane(&job);
        let mut lanes = lock(&self.lanes);
        if !lanes.known.insert((lane.clone(), job.due.notice.state)) {
            return;
        }
        match lanes.waiting.get_mut(&lane) {
            Some(queue) => queue.push_back(job),
            None => {
                lanes.waiting.insert(lane, VecDeque::new());
                self.dispatch(job);
            }
        }
    }

    fn dispatch(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            tracing::warn!("the notifier has stopped: a notice was not sent");
        }
    }

    /// The delivery of `job` is over: the next one in its lane goes.
    fn done(&self, lane: Lane, state: State) {
        let mut lanes = lock(&self.lanes);
        lanes.known.remove(&(lane.clone(), state));
        let next = lanes.waiting.get_mut(&lane).and_then(VecDeque::pop_front);
        match next {
            Some(job) => self.dispatch(job),
            None => {
                lanes.waiting.remove(&lane);
            }
        }
    }

    /// Delivers what is handed over, until the operator stops.
    pub async fn run(ctx: Arc<Context>) {
        let Some(mut queue) = lock(&ctx.notifier.queue).take() else {
            return;
        };
        let client = match https_client() {
            Ok(client) => client,
            Err(why) => {
                tracing::error!(%why, "no AccessRequest notice can be sent");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(AT_ONCE));
        while let Some(job) = queue.recv().await {
            let (ctx, client, permits) = (ctx.clone(), client.clone(), permits.clone());
            tokio::spawn(async move {
                let (lane, state) = (lane(&job), job.due.notice.state);
                deliver(&ctx, &client, &permits, job).await;
                ctx.notifier.done(lane, state);
            });
        }
    }
}

type Https = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn https_client() -> Result<Https, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no CA certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HttpClient::builder(TokioExecutor::new()).build(connector))
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The webhook URL, from the receiver's Secret.
async fn url(ctx: &Context, job: &Job) -> Result<http::Uri, String> {
    let reference = &job.receiver.url_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &job.connector_namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|e| format!("the Secret {} cannot be read: {e}", reference.name))?
        .ok_or_else(|| format!("the Secret {} does not exist", reference.name))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .ok_or_else(|| format!("the Secret {} has no key {}", reference.name, reference.key))?;
    let text = String::from_utf8_lossy(&value.0).trim().to_string();
    // The parse error would quote the URL: only its kind is said.
    let uri: http::Uri = text.parse().map_err(|_| {
        format!(
            "the Secret {} key {} is not a URL",
            reference.name, reference.key
        )
    })?;
    match uri.scheme_str() {
        Some("https" | "http") => Ok(uri),
        _ => Err(format!(
            "the Secret {} key {} is not an http(s) URL",
            reference.name, reference.key
        )),
    }
}

/// One attempt: `Ok` once the receiver answered 2xx; otherwise what went wrong, without the URL.
async fn attempt(ctx: &Context, client: &Https, job: &Job) -> Result<(), String> {
    let uri = url(ctx, job).await?;
    let (content_type, body) = payload(job.receiver.format, &job.due.notice);
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::USER_AGENT, "aws-access-operator")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("the request cannot be built: {e}"))?;
    let response = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()))?
        .map_err(|e| {
            // hyper's errors name no URL; the connect error's source says refused, reset, TLS…
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            format!("the request failed{cause}")
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

async fn deliver(ctx: &Context, client: &Https, permits: &Semaphore, job: Job) {
    let started = Instant::now();
    let state = job.due.notice.state;
    let mut attempts = 0;
    let settled = loop {
        attempts += 1;
        // A permit per attempt, not per delivery: a receiver waiting out its backoff holds
        // none, one that hangs holds one for an attempt's timeout at most.
        let Ok(permit) = permits.acquire().await else {
            return;
        };
        let tried = attempt(ctx, client, &job).await;
        drop(permit);
        match tried {
            Ok(()) => {
                ctx.metrics
                    .observe_notice(&job.connector, &job.receiver.name, "delivered");
                tracing::info!(request = %job.request, receiver = %job.receiver.name, state = state.as_str(), attempts, "notice delivered");
                break Settled::Delivered {
                    at: now(),
                    attempts,
                };
            }
            Err(why) => {
                ctx.metrics
                    .observe_notice(&job.connector, &job.receiver.name, "failed");
                let wait = backoff(attempts - 1);
                if started.elapsed() + wait > DELIVERY_WINDOW {
                    ctx.metrics
                        .observe_notice(&job.connector, &job.receiver.name, "given_up");
                    tracing::warn!(request = %job.request, receiver = %job.receiver.name, state = state.as_str(), attempts, %why, "notice given up after {} minutes", DELIVERY_WINDOW.as_secs() / 60);
                    break Settled::GaveUp {
                        at: now(),
                        why,
                        attempts,
                    };
                }
                tracing::warn!(request = %job.request, receiver = %job.receiver.name, state = state.as_str(), attempts, %why, retry_in_seconds = wait.as_secs(), "notice not delivered");
                tokio::time::sleep(wait).await;
            }
        }
    };
    if ctx.fence_for(&job.connector).check().is_err() {
        return;
    }
    let store = NoticeStore::new(ctx.client.clone(), &ctx.home_namespace);
    if let Err(error) = store
        .settle(&job.uid, &job.receiver.name, state, &settled)
        .await
    {
        tracing::warn!(request = %job.request, receiver = %job.receiver.name, %error, "the notice's delivery is not recorded; a restart sends it again");
    }
}
