//! What the Identity Store streams tell the Identity Center stream while they list: how many
//! users and groups are listed so far, and each list's ids once it is complete. The choice of
//! how to list assignments needs only to know whether the principals outnumber a number of
//! calls, which a partial count often settles long before the lists end.

use std::sync::Arc;

use tokio::sync::watch;

/// One list (the users, or the groups) as far as it got.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listed {
    pub count: usize,
    /// `Some(Some(ids))` once complete; `Some(None)` when it could not be completed.
    /// Users' ids are the users' own copies.
    pub ids: Option<Option<Vec<Arc<str>>>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    pub users: Listed,
    pub groups: Listed,
}

impl Census {
    fn count(&self) -> usize {
        self.users.count + self.groups.count
    }

    /// Both lists ended, complete or not: the count is final.
    fn settled(&self) -> bool {
        self.users.ids.is_some() && self.groups.ids.is_some()
    }
}

pub type Told = watch::Sender<Census>;
pub type Heard = watch::Receiver<Census>;

/// Whether there are more than `n` principals, waiting only until that is known; with the
/// count of principals known when it was.
pub async fn more_than(heard: &mut Heard, n: usize) -> (bool, usize) {
    let answered = heard
        .wait_for(|c| c.count() > n || c.settled())
        .await
        .map(|census| census.count());
    // Nobody tells any more: what was told is all there is.
    let count = answered.unwrap_or_else(|_| heard.borrow().count());
    (count > n, count)
}

/// The ids of every user and group, once both lists are complete; `None` if either could not
/// be.
pub async fn ids(heard: &mut Heard) -> Option<(Vec<Arc<str>>, Vec<Arc<str>>)> {
    let census = heard.wait_for(Census::settled).await.ok()?.clone();
    Some((census.users.ids.flatten()?, census.groups.ids.flatten()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_partial_count_settles_the_question_before_the_lists_end() {
        let (told, mut heard) = watch::channel(Census::default());
        told.send_modify(|c| c.users.count = 150);
        // 150 listed so far: more than 100 is known at once, while both lists go on.
        assert_eq!(more_than(&mut heard, 100).await, (true, 150));
        // More than 200 is not known until the lists end.
        let later = tokio::spawn(async move {
            let answer = more_than(&mut heard, 200).await;
            (answer, ids(&mut heard).await)
        });
        tokio::task::yield_now().await;
        assert!(!later.is_finished());
        told.send_modify(|c| {
            c.users.count = 180;
            c.users.ids = Some(Some(vec!["u".into(); 180]));
        });
        told.send_modify(|c| {
            c.groups.count = 3;
            c.groups.ids = Some(Some(vec!["g".into(); 3]));
        });
        let ((more, count), ids) = later.await.expect("answered");
        assert_eq!((more, count), (false, 183));
        let (users, groups) = ids.expect("both complete");
        assert_eq!((users.len(), groups.len()), (180, 3));
    }

    #[tokio::test]
    async fn a_list_that_could_not_be_completed_has_no_ids() {
        let (told, mut heard) = watch::channel(Census::default());
        told.send_modify(|c| {
            c.users.ids = Some(Some(Vec::new()));
            c.groups.ids = Some(None);
        });
        assert_eq!(more_than(&mut heard, 0).await, (false, 0));
        assert_eq!(ids(&mut heard).await, None);
        drop(told);
        let (_, mut orphaned) = watch::channel(Census::default());
        assert_eq!(
            more_than(&mut orphaned, 5).await,
            (false, 0),
            "nobody tells: 0"
        );
    }
}
