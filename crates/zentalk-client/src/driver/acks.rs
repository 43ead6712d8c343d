//! When to acknowledge mailbox items: the bookkeeping of one held mailbox link, without I/O.
//!
//! An ack deletes *every* item up to a seq, and a relay may skip pushes (a full push queue),
//! so an item is acknowledged only once a fetch chain (pages from the watermark until
//! `more = false`) has shown that everything stored up to it was fed. Pushes are fed at once
//! and start (or extend) a chain. Seqs are global to the relay's store, so gaps in them say
//! nothing; only a complete chain does.

use std::collections::BTreeSet;

use super::io::LinkCommand;

/// The acknowledgement state of one mailbox link (kept across reconnections).
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    /// The link generation the state belongs to.
    generation: u64,
    /// Every item up to here is fed, saved and acknowledged.
    watermark: u64,
    /// Items above the watermark already fed (pushes, earlier pages).
    processed: BTreeSet<u64>,
    /// A fetch chain is under way; the highest seq of its pages so far.
    chain: Option<u64>,
    /// A push arrived during the chain: fetch again when it ends.
    refetch: bool,
    /// The chain under way brought at least one item (then its end acknowledges, even if
    /// every item was at or below the watermark: their earlier ack was lost with a link).
    chain_items: bool,
}

/// What to do with a page: which of its items to feed (indices), and the commands to send to
/// the link once the state reflecting them is saved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PagePlan {
    pub(crate) feed: Vec<usize>,
    pub(crate) after_save: Vec<LinkCommand>,
}

impl AckTracker {
    /// A new link generation authenticated; the relay sends its first page by itself.
    pub(crate) fn up(&mut self, generation: u64) {
        self.generation = generation;
        self.chain = Some(self.watermark);
        self.refetch = false;
        self.chain_items = false;
    }

    /// The link of `generation` (or a failed attempt at it) is gone. `false` for a stale
    /// report.
    pub(crate) fn down(&mut self, generation: u64) -> bool {
        if generation < self.generation {
            return false;
        }
        self.generation = generation;
        self.chain = None;
        self.refetch = false;
        self.chain_items = false;
        true
    }

    /// A page with these seqs arrived. `None` for a page of an older link.
    pub(crate) fn page(&mut self, generation: u64, seqs: &[u64], more: bool) -> Option<PagePlan> {
        if generation != self.generation {
            return None;
        }
        let mut chain_max = self.chain.unwrap_or(self.watermark);
        self.chain_items |= !seqs.is_empty();
        let mut feed = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            chain_max = chain_max.max(seq);
            if seq > self.watermark && self.processed.insert(seq) {
                feed.push(i);
            }
        }
        let mut after_save = Vec::new();
        if more {
            self.chain = Some(chain_max);
            after_save.push(LinkCommand::Fetch {
                generation,
                after: chain_max,
            });
            return Some(PagePlan { feed, after_save });
        }
        // The chain is complete: every stored item up to chain_max has been fed.
        self.chain = None;
        if chain_max > self.watermark {
            self.watermark = chain_max;
            self.processed.retain(|s| *s > chain_max);
        }
        if std::mem::take(&mut self.chain_items) {
            after_save.push(LinkCommand::Ack {
                generation,
                up_to: self.watermark,
            });
        }
        if std::mem::take(&mut self.refetch) {
            self.chain = Some(self.watermark);
            after_save.push(LinkCommand::Fetch {
                generation,
                after: self.watermark,
            });
        }
        Some(PagePlan { feed, after_save })
    }

    /// A pushed item arrived: whether to feed it, and the fetch to start (if no chain runs).
    /// `None` for a push of an older link.
    pub(crate) fn push(
        &mut self,
        generation: u64,
        seq: u64,
    ) -> Option<(bool, Option<LinkCommand>)> {
        if generation != self.generation {
            return None;
        }
        let feed = seq > self.watermark && self.processed.insert(seq);
        let fetch = if self.chain.is_none() {
            self.chain = Some(self.watermark);
            Some(LinkCommand::Fetch {
                generation,
                after: self.watermark,
            })
        } else {
            self.refetch = true;
            None
        };
        Some((feed, fetch))
    }

    /// Everything up to here is acknowledged.
    #[cfg(test)]
    pub(crate) fn watermark(&self) -> u64 {
        self.watermark
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(generation: u64, up_to: u64) -> LinkCommand {
        LinkCommand::Ack { generation, up_to }
    }

    fn fetch(generation: u64, after: u64) -> LinkCommand {
        LinkCommand::Fetch { generation, after }
    }

    #[test]
    fn pages_are_acknowledged_only_when_the_chain_ends() {
        let mut t = AckTracker::default();
        t.up(1);
        let p = t.page(1, &[3, 5], true).unwrap();
        assert_eq!(p.feed, [0, 1]);
        assert_eq!(p.after_save, [fetch(1, 5)]);
        assert_eq!(t.watermark(), 0);
        let p = t.page(1, &[8], false).unwrap();
        assert_eq!(p.feed, [0]);
        assert_eq!(p.after_save, [ack(1, 8)]);
        assert_eq!(t.watermark(), 8);
        // An empty final page acknowledges nothing new.
        t.up(2);
        let p = t.page(2, &[], false).unwrap();
        assert!(p.feed.is_empty() && p.after_save.is_empty());
    }

    #[test]
    fn a_push_is_fed_at_once_but_acknowledged_through_a_chain() {
        let mut t = AckTracker::default();
        t.up(1);
        assert_eq!(t.page(1, &[], false).unwrap().after_save, []);
        // Push 12 arrives; the relay skipped push 11 (full queue). Acking 12 now would delete
        // 11 unseen, so a fetch from the watermark goes out instead.
        assert_eq!(t.push(1, 12), Some((true, Some(fetch(1, 0)))));
        let p = t.page(1, &[11, 12], false).unwrap();
        assert_eq!(p.feed, [0], "12 was fed already");
        assert_eq!(p.after_save, [ack(1, 12)]);
        // A push during a chain marks a second fetch, sent when the chain ends.
        assert_eq!(t.push(1, 13), Some((true, Some(fetch(1, 12)))));
        assert_eq!(t.push(1, 14), Some((true, None)));
        let p = t.page(1, &[13], false).unwrap();
        assert!(p.feed.is_empty());
        assert_eq!(p.after_save, [ack(1, 13), fetch(1, 13)]);
        let p = t.page(1, &[14], false).unwrap();
        assert!(p.feed.is_empty());
        assert_eq!(p.after_save, [ack(1, 14)]);
        // A redelivered push of an acknowledged item is not fed again.
        assert_eq!(t.push(1, 14), Some((false, Some(fetch(1, 14)))));
    }

    #[test]
    fn a_new_link_starts_over_and_stale_reports_are_ignored() {
        let mut t = AckTracker::default();
        t.up(1);
        assert_eq!(t.page(1, &[4], true).unwrap().after_save, [fetch(1, 4)]);
        // The link drops mid-chain: nothing was acknowledged.
        assert!(t.down(1));
        assert_eq!(t.watermark(), 0);
        // A failed attempt (generation 2) and a late report of generation 1.
        assert!(t.down(2));
        assert!(!t.down(1));
        t.up(3);
        assert_eq!(t.page(1, &[9], false), None);
        assert_eq!(t.push(2, 9), None);
        // The first page of the new link repeats 4 (fed already), brings 6.
        let p = t.page(3, &[4, 6], false).unwrap();
        assert_eq!(p.feed, [1]);
        assert_eq!(p.after_save, [ack(3, 6)]);
        // Items at or below the watermark (an ack that was lost) are skipped but acknowledged.
        t.up(4);
        let p = t.page(4, &[5, 6], false).unwrap();
        assert!(p.feed.is_empty());
        assert_eq!(p.after_save, [ack(4, 6)]);
        assert_eq!(t.watermark(), 6);
    }
}
