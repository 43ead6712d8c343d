//! [`Backend`] over the real driver: converts its types into the API's JSON shapes and its
//! errors into [`RequestError`]s.

use tokio::sync::broadcast;
use zentalk_crypto::{Address, IdentityPublicKey};

use super::types::{addr, id_hex};
use super::{
    AccountView, ApiEvent, Backend, ContactView, ConversationView, MessageStatusView, MessageView,
    RequestError, to_hex,
};
use crate::dht::LookupError;
use crate::driver::{
    ConversationSummary, DriverError, DriverEvent, HistoryCursor, HistoryMessage, MessageStatus,
};
use crate::{ClientError, ContactInfo, DriverHandle, MessageId};

/// The API's error for a driver error. Details are the driver's `Display` texts, which name
/// no key and no plaintext.
fn request_error(e: DriverError) -> RequestError {
    let detail = e.to_string();
    match e {
        DriverError::UnknownContact => RequestError::UnknownContact,
        DriverError::Stopped => RequestError::Unavailable { detail },
        DriverError::Lookup(LookupError::Net(_)) | DriverError::Net(_) => {
            RequestError::Network { detail }
        }
        DriverError::Lookup(_) => RequestError::ContactNotFound { detail },
        DriverError::Client(ClientError::TextTooLong { max, found }) => {
            RequestError::TextTooLong { max, found }
        }
        DriverError::PageLimit { max, found } => RequestError::BadLimit { max, found },
        _ => RequestError::Driver { detail },
    }
}

/// The cursor as apps see it: `<timestamp_ms>.<row>`.
pub(crate) fn cursor_text(c: &HistoryCursor) -> String {
    format!("{}.{}", c.timestamp_ms, c.row)
}

/// Parses [`cursor_text`]'s form.
pub(crate) fn parse_cursor(s: &str) -> Result<HistoryCursor, RequestError> {
    s.split_once('.')
        .and_then(|(t, r)| {
            Some(HistoryCursor {
                timestamp_ms: t.parse().ok()?,
                row: r.parse().ok()?,
            })
        })
        .ok_or_else(|| RequestError::BadCursor {
            found: super::error::truncated(s),
        })
}

fn contact_view(c: &ContactInfo) -> ContactView {
    ContactView {
        address: addr(&c.address),
        identity_key: to_hex(c.identity.as_bytes()),
        pending: u64::try_from(c.unacknowledged).unwrap_or(u64::MAX),
    }
}

fn status_view(s: MessageStatus) -> MessageStatusView {
    match s {
        MessageStatus::Sending => MessageStatusView::Sending,
        MessageStatus::Sent => MessageStatusView::Sent,
        MessageStatus::Delivered => MessageStatusView::Delivered,
        MessageStatus::Read => MessageStatusView::Read,
        _ => MessageStatusView::Failed,
    }
}

fn message_view(m: &HistoryMessage) -> MessageView {
    MessageView {
        id: id_hex(&m.id),
        peer: addr(&m.peer),
        outgoing: m.outgoing,
        seq: m.seq,
        text: m.text.clone(),
        sent_ms: m.sent_ms,
        status: status_view(m.status),
        read: m.read,
        cursor: cursor_text(&m.cursor),
    }
}

fn conversation_view(c: &ConversationSummary) -> ConversationView {
    ConversationView {
        peer: addr(&c.peer),
        unread: c.unread,
        last_ms: c.last_ms,
        last_text: c.last_text.clone(),
    }
}

/// The API form of a driver event; `None` for the network bookkeeping apps are not shown
/// (new mailboxes, relays left out of routes, directory refreshes, card publication).
pub(crate) fn api_event(event: &DriverEvent) -> Option<ApiEvent> {
    Some(match event {
        DriverEvent::Message {
            from,
            id,
            seq,
            text,
            received_ms,
        } => ApiEvent::Message {
            from: addr(from),
            id: id_hex(id),
            seq: *seq,
            text: text.clone(),
            received_ms: *received_ms,
        },
        DriverEvent::Sent { to, id } => ApiEvent::Sent {
            to: addr(to),
            id: id_hex(id),
        },
        DriverEvent::Delivered { to, id } => ApiEvent::Delivered {
            to: addr(to),
            id: id_hex(id),
        },
        DriverEvent::Read { by, ids } => ApiEvent::Read {
            by: addr(by),
            ids: ids.iter().map(id_hex).collect(),
        },
        DriverEvent::Typing { from, typing } => ApiEvent::Typing {
            from: addr(from),
            typing: *typing,
        },
        DriverEvent::Presence { from, online } => ApiEvent::Presence {
            from: addr(from),
            online: *online,
        },
        DriverEvent::GapDetected { from, first, last } => ApiEvent::GapDetected {
            from: addr(from),
            first: *first,
            last: *last,
        },
        DriverEvent::MessagesLost { from, first, last } => ApiEvent::MessagesLost {
            from: addr(from),
            first: *first,
            last: *last,
        },
        DriverEvent::ContactAdded { address } => ApiEvent::ContactAdded {
            address: addr(address),
        },
        DriverEvent::SessionReset { from } => ApiEvent::SessionReset { from: addr(from) },
        DriverEvent::SessionRepairStarted { with } => {
            ApiEvent::SessionRepairStarted { with: addr(with) }
        }
        DriverEvent::RepairNeedsCard { address } => ApiEvent::RepairNeedsCard {
            address: addr(address),
        },
        DriverEvent::SendFailed { id, reason } => ApiEvent::SendFailed {
            id: id.as_ref().map(id_hex),
            reason: reason.clone(),
        },
        DriverEvent::LinkUp { relay } => ApiEvent::LinkUp {
            relay: relay.to_base32(),
        },
        DriverEvent::LinkDown { relay, reason } => ApiEvent::LinkDown {
            relay: relay.to_base32(),
            reason: reason.clone(),
        },
        // Bookkeeping (and any event a later driver adds before the API learns it).
        #[allow(
            unreachable_patterns,
            reason = "DriverEvent grows; unknown events are not guessed at"
        )]
        _ => return None,
    })
}

impl Backend for DriverHandle {
    type Event = DriverEvent;

    async fn account(&self) -> Result<AccountView, RequestError> {
        let a = self.address();
        Ok(AccountView {
            address: a.to_base32(),
            address_hex: a.to_hex(),
            identity_key: to_hex(self.identity_key().as_bytes()),
        })
    }

    async fn add_contact(&self, identity: IdentityPublicKey) -> Result<ContactView, RequestError> {
        DriverHandle::add_contact(self, identity)
            .await
            .map(|c| contact_view(&c))
            .map_err(request_error)
    }

    async fn contacts(&self) -> Result<Vec<ContactView>, RequestError> {
        DriverHandle::contacts(self)
            .await
            .map(|cs| cs.iter().map(contact_view).collect())
            .map_err(request_error)
    }

    async fn send_text(&self, to: Address, text: String) -> Result<MessageId, RequestError> {
        DriverHandle::send_text(self, to, text)
            .await
            .map_err(request_error)
    }

    async fn conversations(&self) -> Result<Vec<ConversationView>, RequestError> {
        DriverHandle::conversations(self)
            .await
            .map(|cs| cs.iter().map(conversation_view).collect())
            .map_err(request_error)
    }

    async fn messages(
        &self,
        peer: Address,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<MessageView>, RequestError> {
        let before = before.as_deref().map(parse_cursor).transpose()?;
        DriverHandle::messages(self, peer, before, limit)
            .await
            .map(|ms| ms.iter().map(message_view).collect())
            .map_err(request_error)
    }

    async fn mark_read(&self, peer: Address) -> Result<(), RequestError> {
        DriverHandle::mark_read(self, peer)
            .await
            .map_err(request_error)
    }

    async fn set_typing(&self, peer: Address, typing: bool) -> Result<(), RequestError> {
        DriverHandle::set_typing(self, peer, typing)
            .await
            .map_err(request_error)
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        DriverHandle::subscribe(self)
    }

    fn to_api(event: &DriverEvent) -> Option<ApiEvent> {
        api_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zentalk_crypto::NodeId;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for c in [
            HistoryCursor {
                timestamp_ms: 1_700_000_000_123,
                row: 42,
            },
            HistoryCursor {
                timestamp_ms: -1,
                row: i64::MAX,
            },
        ] {
            assert_eq!(parse_cursor(&cursor_text(&c)).unwrap(), c);
        }
        for bad in [
            "",
            ".",
            "1",
            "1.",
            ".2",
            "a.b",
            "1.2.3",
            "99999999999999999999.1",
        ] {
            assert!(
                matches!(parse_cursor(bad), Err(RequestError::BadCursor { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn driver_errors_map_to_statuses() {
        let cases = [
            (DriverError::UnknownContact, 404, "unknown_contact"),
            (DriverError::Stopped, 503, "unavailable"),
            (
                DriverError::Lookup(LookupError::NotFound),
                404,
                "contact_not_found",
            ),
            (
                DriverError::Client(ClientError::TextTooLong { max: 1, found: 2 }),
                400,
                "text_too_long",
            ),
            (
                DriverError::PageLimit { max: 1, found: 2 },
                400,
                "bad_limit",
            ),
        ];
        for (e, status, code) in cases {
            let r = request_error(e);
            assert_eq!((r.status().as_u16(), r.code()), (status, code));
        }
    }

    #[test]
    fn driver_events_map_to_api_events() {
        let a = Address::from_bytes([4; 32]);
        let e = DriverEvent::Read {
            by: a,
            ids: vec![[7; 16]],
        };
        let json = serde_json::to_string(&api_event(&e).unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"type\":\"read\",\"by\":\"{}\",\"ids\":[\"{}\"]}}",
                a.to_base32(),
                "07".repeat(16)
            )
        );
        let m = DriverEvent::MailboxCreated {
            relay: NodeId::from_bytes([1; 32]),
        };
        assert_eq!(api_event(&m), None);
        let up = DriverEvent::LinkUp {
            relay: NodeId::from_bytes([1; 32]),
        };
        assert_eq!(
            api_event(&up),
            Some(ApiEvent::LinkUp {
                relay: NodeId::from_bytes([1; 32]).to_base32()
            })
        );
    }
}
