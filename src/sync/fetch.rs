//! Fetching the items of a per-item phase (a group's members, a permission set's details, a
//! pair's assignments): every page of one item one after another, since its pages chain by
//! token, and several items at once, so that a lane stays busy while a request is on the wire.
//! The rate limit is the lane's token bucket, not this: more items in flight only hide latency.
//! Pages are handed over as they come, so that each is learned, and its item's next token
//! saved, without waiting for slower items.

use std::future::Future;

use futures::{Stream, StreamExt};

use crate::aws::AwsError;
use crate::aws::model::Page;

/// Items fetched at once per stream. At AWS's default quotas (20 per second on a lane) this
/// keeps the lane busy with answers up to about 400 ms away.
pub const IN_FLIGHT: usize = 8;

/// Every page of each item (`key`, and the token to start from: `None` for its first page),
/// up to `in_flight` items at once (`IN_FLIGHT` but where a setting says otherwise), each page handed over with its item's key as it comes. An
/// item's pages stop after its last page or its first error. Pages not yet handed over when the
/// consumer stops are dropped.
pub fn pages_of<T, F, Fut>(
    items: Vec<(String, Option<String>)>,
    in_flight: usize,
    list: F,
) -> impl Stream<Item = (String, Result<Page<Vec<T>>, AwsError>)>
where
    F: Fn(String, Option<String>) -> Fut + Clone,
    Fut: Future<Output = Result<Page<Vec<T>>, AwsError>>,
{
    futures::stream::iter(items)
        .map(move |(key, token)| {
            let list = list.clone();
            // The state: `Some(token)` while there is a page to ask for.
            Box::pin(futures::stream::unfold(Some(token), move |next| {
                let (list, key) = (list.clone(), key.clone());
                async move {
                    let token = next?;
                    let page = list(key.clone(), token).await;
                    let next = match &page {
                        Ok(page) => page.next.clone().map(Some),
                        Err(_) => None,
                    };
                    Some(((key, page), next))
                }
            }))
        })
        .flatten_unordered(in_flight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn items_overlap_and_each_pages_from_its_token() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Item i has i % 3 + 1 pages; item 5 resumes at its token "2" (its last page); item 7
        // fails on its first page.
        let mut items: Vec<(String, Option<String>)> =
            (0..20).map(|i| (i.to_string(), None)).collect();
        items[5].1 = Some("2".into());
        let list = {
            let (running, most) = (running.clone(), most.clone());
            move |key: String, token: Option<String>| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let item: u64 = key.parse().expect("number");
                    // Later items answer sooner.
                    tokio::time::sleep(Duration::from_millis(100 - item * 3)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    if item == 7 {
                        return Err(AwsError::new(
                            "ListThings",
                            crate::aws::error::ErrorKind::AccessDenied,
                            "denied",
                        ));
                    }
                    let page: u64 = token.map_or(0, |t| t.parse().expect("number"));
                    let next = (page < item % 3).then(|| (page + 1).to_string());
                    Ok(Page::new(vec![(item, page)], next))
                }
            }
        };
        type Answer = (String, Result<Page<Vec<(u64, u64)>>, AwsError>);
        let answers: Vec<Answer> = pages_of(items, IN_FLIGHT, list).collect().await;
        let mut pages: Vec<(u64, u64)> = answers
            .iter()
            .filter_map(|(_, page)| page.as_ref().ok())
            .flat_map(|page| page.items.clone())
            .collect();
        let failed: Vec<&str> = answers
            .iter()
            .filter(|(_, page)| page.is_err())
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(failed, ["7"], "one error, not retried here");
        let mut expected: Vec<(u64, u64)> = (0..20u64)
            .filter(|i| *i != 7)
            .flat_map(|i| {
                let first = if i == 5 { 2 } else { 0 };
                (first..=i % 3).map(move |page| (i, page))
            })
            .collect();
        pages.sort();
        expected.sort();
        assert_eq!(pages, expected);
        // Handed over as they came: a later, quicker item before an earlier one.
        let first = answers.first().expect("answers").0.clone();
        assert_ne!(first, "0");
        assert_eq!(most.load(Ordering::SeqCst), IN_FLIGHT);
    }
}
