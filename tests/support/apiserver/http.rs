//! HTTP routing of the emulator and the streaming of watches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Options;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{ApiError, ApiResult, Change, PatchType, Store};

type Body = BoxBody<Bytes, Infallible>;

type Recorder = Arc<Mutex<std::collections::BTreeSet<super::Access>>>;

pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Mutex<Store>>,
    options: Options,
    recorder: Option<Recorder>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (store, options, recorder) = (store.clone(), options.clone(), recorder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (store, options, recorder) = (store.clone(), options.clone(), recorder.clone());
                async move {
                    if let Some(recorder) = &recorder {
                        record(&store, recorder, &request);
                    }
                    Ok::<_, Infallible>(handle(request, store, options).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Records a request as RBAC sees it: (group, resource[/subresource], verb, namespace, name).
fn record(store: &Arc<Mutex<Store>>, recorder: &Recorder, request: &Request<Incoming>) {
    let store = store.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(target) = route(&store, request.uri().path()) else {
        return;
    };
    let kind = &store.kinds[target.kind];
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (request.method(), target.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => return,
    };
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", kind.plural),
        None => kind.plural.to_string(),
    };
    recorder.lock().unwrap_or_else(|p| p.into_inner()).insert((
        kind.group.to_string(),
        resource,
        verb.to_string(),
        target.namespace.clone().unwrap_or_default(),
        match verb {
            "create" => String::new(),
            _ => target.name.clone().unwrap_or_default(),
        },
    ));
}

fn full(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(e: &ApiError) -> Response<Body> {
    full(e.code_and_reason().0, &e.to_status())
}

/// A request's target: which kind, where, and which subresource.
struct Target {
    kind: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(store: &Store, path: &str) -> ApiResult<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::NotFound(format!("no route for {path}"))),
    };
    let find = |plural: &str| {
        store.find_kind(group, version, plural).ok_or_else(|| {
            ApiError::NotFound(format!(
                "the server could not find the requested resource ({path})"
            ))
        })
    };
    let target = |kind, namespace: Option<&&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        kind,
        namespace: namespace.map(|s| s.to_string()),
        name: name.map(|s| s.to_string()),
        subresource: sub.map(|s| s.to_string()),
    };
    match rest {
        // `namespaces/<ns>/<plural>...` addresses namespaced objects, unless what follows the
        // namespace name is its own subresource.
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" => {
            let kind = find(plural)?;
            match tail {
                [] => Ok(target(kind, Some(ns), None, None)),
                [name] => Ok(target(kind, Some(ns), Some(name), None)),
                [name, sub] => Ok(target(kind, Some(ns), Some(name), Some(sub))),
                _ => Err(ApiError::NotFound(format!("no route for {path}"))),
            }
        }
        [plural, tail @ ..] => {
            let kind = find(plural)?;
            match tail {
                [] => Ok(target(kind, None, None, None)),
                [name] => Ok(target(kind, None, Some(name), None)),
                [name, sub] => Ok(target(kind, None, Some(name), Some(sub))),
                _ => Err(ApiError::NotFound(format!("no route for {path}"))),
            }
        }
        [] => Err(ApiError::NotFound(format!("no route for {path}"))),
    }
}

fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_body(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .or_else(|_| serde_saphyr::from_slice(bytes))
        .map_err(|e| ApiError::BadRequest(format!("cannot decode the body: {e}")))
}

async fn handle(
    request: Request<Incoming>,
    store: Arc<Mutex<Store>>,
    options: Options,
) -> Response<Body> {
    if request.uri().path() == "/version" {
        return full(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-emulator"}),
        );
    }
    let params = query(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(&ApiError::BadRequest("unreadable body".into())),
    };

    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let target = match route(&lock(), &path) {
        Ok(target) => target,
        Err(e) => return error(&e),
    };
    let cluster_wide_collection = target.namespace.is_none()
        && target.name.is_none()
        && method == Method::GET
        && options
            .namespaced_only
            .iter()
            .any(|plural| path.trim_end_matches('/').ends_with(&format!("/{plural}")));
    if cluster_wide_collection {
        return error(&ApiError::Forbidden(format!(
            "cannot list resource at the cluster scope: {path}"
        )));
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let manager = params.get("fieldManager").map(String::as_str);
    let sub = target.subresource.as_deref();

    let result = match (&method, &target.name) {
        (&Method::GET, None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch(&store, &target, &params, &options);
        }
        (&Method::GET, None) => list(&lock(), &target, &params),
        (&Method::GET, Some(name)) => lock().get(target.kind, &namespace, name),
        (&Method::POST, None) => parse_body(&body).and_then(|object| {
            lock().create(
                target.kind,
                &namespace,
                object,
                manager.unwrap_or("unknown"),
            )
        }),
        (&Method::PUT, Some(name)) => parse_body(&body).and_then(|object| {
            lock().replace(
                target.kind,
                &namespace,
                name,
                object,
                sub,
                manager.unwrap_or("unknown"),
            )
        }),
        (&Method::PATCH, Some(name)) => {
            let patch_type = match content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => Ok(PatchType::Json),
                "application/merge-patch+json" => Ok(PatchType::Merge),
                "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
                "application/apply-patch+yaml" | "application/apply-patch+json" => {
                    Ok(PatchType::Apply {
                        force: params.get("force").is_some_and(|f| f == "true"),
                    })
                }
                other => Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format: {other}"
                ))),
            };
            patch_type.and_then(|patch_type| {
                parse_body(&body).and_then(|b| {
                    lock().patch(target.kind, &namespace, name, patch_type, &b, sub, manager)
                })
            })
        }
        (&Method::DELETE, Some(name)) => {
            // DeleteOptions may carry a precondition on the resourceVersion (409 on mismatch).
            let expected = serde_json::from_slice::<Value>(&body).ok().and_then(|o| {
                o.pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let mut store = lock();
            match expected {
                Some(version) => store
                    .get(target.kind, &namespace, name)
                    .and_then(|current| {
                        let actual = current
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        if actual == version {
                            store.delete(target.kind, &namespace, name)
                        } else {
                            Err(ApiError::Conflict(format!(
                                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {actual}"
                            )))
                        }
                    }),
                None => store.delete(target.kind, &namespace, name),
            }
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{method} is not allowed on {path}"
        ))),
    };
    match result {
        Ok(object) => full(if method == Method::POST { 201 } else { 200 }, &object),
        Err(e) => error(&e),
    }
}

fn selectors(params: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::BadRequest)?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::BadRequest)?;
    Ok((labels, fields))
}

fn list(store: &Store, target: &Target, params: &HashMap<String, String>) -> ApiResult<Value> {
    let (labels, fields) = selectors(params)?;
    let limit = match params.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit {l}")))?,
        )
        .filter(|l| *l > 0),
        None => None,
    };
    let page = store.list(
        target.kind,
        target.namespace.as_deref(),
        &labels,
        &fields,
        limit,
        params
            .get("continue")
            .map(String::as_str)
            .filter(|c| !c.is_empty()),
    )?;
    let kind = &store.kinds[target.kind];
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    Ok(
        json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind),
              "metadata": metadata, "items": page.items}),
    )
}

fn line(type_: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": type_, "object": object})))
}

fn watch(
    store: &Arc<Mutex<Store>>,
    target: &Target,
    params: &HashMap<String, String>,
    options: &Options,
) -> Response<Body> {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let from = match params.get("resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) => match v.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return error(&ApiError::BadRequest(format!(
                    "invalid resourceVersion {v}"
                )));
            }
        },
        None => None,
    };
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (changes_tx, mut changes) = mpsc::unbounded_channel::<Change>();
    let (kind, replay) = {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        let kind = store.kinds[target.kind].clone();
        (kind, store.subscribe(target.kind, from, changes_tx))
    };
    let (body_tx, body_rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let namespace = target.namespace.clone();
    let store = store.clone();
    let bookmark_interval = options.bookmark_interval;
    tokio::spawn(async move {
        let send = |bytes: Bytes| {
            let tx = body_tx.clone();
            async move { tx.send(Ok(Frame::data(bytes))).await.is_ok() }
        };
        let replay = match replay {
            Ok(replay) => replay,
            Err(e) => {
                // An expired version is reported inside the watch stream, as the apiserver does.
                let _ = send(line("ERROR", &e.to_status())).await;
                return;
            }
        };
        let visible =
            |object: &Value| labels.matches_object(object) && fields.matches_object(object);
        let in_scope =
            |change: &Change| namespace.as_deref().is_none_or(|ns| ns == change.namespace);
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        let mut pending = replay.into_iter();
        loop {
            let change = match pending.next() {
                Some(change) => change,
                None => {
                    let sleep_until = deadline.unwrap_or_else(|| {
                        tokio::time::Instant::now() + Duration::from_secs(86_400)
                    });
                    tokio::select! {
                        change = changes.recv() => match change {
                            Some(change) => change,
                            None => return,
                        },
                        _ = ticker.tick(), if bookmarks => {
                            let version = store.lock().unwrap_or_else(|p| p.into_inner()).resource_version();
                            let bookmark = json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                                "metadata": {"resourceVersion": version.to_string()}});
                            if !send(line("BOOKMARK", &bookmark)).await { return; }
                            continue;
                        }
                        () = tokio::time::sleep_until(sleep_until) => return,
                        () = body_tx.closed() => return,
                    }
                }
            };
            if !in_scope(&change) {
                continue;
            }
            let now = visible(&change.object);
            let before = change.previous.as_ref().is_some_and(&visible);
            let type_ = match (change.type_, before, now) {
                ("DELETED", true, _) => "DELETED",
                ("DELETED", false, _) => continue,
                ("ADDED", _, true) => "ADDED",
                ("MODIFIED", true, true) => "MODIFIED",
                ("MODIFIED", false, true) => "ADDED",
                ("MODIFIED", true, false) => "DELETED",
                _ => continue,
            };
            if !send(line(type_, &change.object)).await {
                return;
            }
        }
    });
    let stream = StreamBody::new(tokio_stream_from(body_rx));
    let mut response = Response::new(BodyExt::boxed(stream));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A receiver as a stream, without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
