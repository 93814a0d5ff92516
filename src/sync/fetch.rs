//! Fetching the items of a per-item phase (a group's members, a permission set's details, a
//! pair's assignments): every page of one item one after another, since its pages chain by
//! token, and several items at once, so that a lane stays busy while a request is on the wire.
//! The rate limit is the lane's token bucket, not this: more items in flight only hide latency.

use std::future::Future;

use futures::{Stream, StreamExt};

use crate::aws::AwsError;
use crate::aws::model::Page;

/// Items fetched at once per stream. At AWS's default quotas (20 per second on a lane) this
/// keeps the lane busy with answers up to about 400 ms away.
pub const IN_FLIGHT: usize = 8;

/// Everything one item's list returned, over all its pages.
#[derive(Debug)]
pub struct Fetched<T> {
    pub items: Vec<T>,
    pub pages: u64,
}

impl<T> Fetched<T> {
    /// What an item whose answer is already known (cached, or known empty) costs: nothing.
    pub fn known(items: Vec<T>) -> Self {
        Self { items, pages: 0 }
    }
}

/// Every page of one list, each asked with the previous page's token.
pub async fn all_pages<T, F, Fut>(mut list: F) -> Result<Fetched<T>, AwsError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<Vec<T>>, AwsError>>,
{
    let mut fetched = Fetched {
        items: Vec::new(),
        pages: 0,
    };
    let mut token = None;
    loop {
        let page = list(token.take()).await?;
        fetched.pages += 1;
        fetched.items.extend(page.items);
        match page.next {
            Some(next) => token = Some(next),
            None => return Ok(fetched),
        }
    }
}

/// `fetch` of each item, up to `IN_FLIGHT` at once, handed over in the items' order: when the
/// n-th answer is handed over, every earlier item is done, so a checkpoint after it resumes at
/// the next item. Answers not yet handed over when the consumer stops are dropped.
pub fn in_order<I, F, Fut>(
    items: impl IntoIterator<Item = I>,
    fetch: F,
) -> impl Stream<Item = Fut::Output>
where
    F: FnMut(I) -> Fut,
    Fut: Future,
{
    futures::stream::iter(items).map(fetch).buffered(IN_FLIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn pages_chain_by_token_and_are_counted() {
        let asked = std::sync::Mutex::new(Vec::new());
        let fetched = all_pages(|token: Option<String>| {
            asked.lock().expect("lock").push(token.clone());
            async move {
                Ok(match token.as_deref() {
                    None => Page::new(vec![1, 2], Some("a".into())),
                    Some("a") => Page::new(vec![3], Some("b".into())),
                    _ => Page::new(vec![4], None),
                })
            }
        })
        .await
        .expect("fetched");
        assert_eq!(fetched.items, [1, 2, 3, 4]);
        assert_eq!(fetched.pages, 3);
        assert_eq!(
            *asked.lock().expect("lock"),
            [None, Some("a".into()), Some("b".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn items_overlap_but_are_handed_over_in_order() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Later items answer sooner: the order handed over must still be the items' order.
        let answers: Vec<usize> = in_order(0..20usize, |i| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100 - i as u64 * 3)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i
            }
        })
        .collect()
        .await;
        assert_eq!(answers, (0..20).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), IN_FLIGHT);
    }
}
