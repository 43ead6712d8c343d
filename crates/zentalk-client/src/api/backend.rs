//! What the API needs from the client: the driver's commands, already in their API shapes.
//! [`crate::DriverHandle`] implements it; the unit tests implement it with a fake so the
//! router, the token check and the validation are tested without a network.

use std::future::Future;

use tokio::sync::broadcast;
use zentalk_crypto::{Address, IdentityPublicKey};

use super::RequestError;
use super::types::{AccountView, ApiEvent, ContactView, ConversationView, MessageView};
use crate::MessageId;

/// The client behind the API.
pub(crate) trait Backend: Clone + Send + Sync + 'static {
    /// What [`Backend::subscribe`] yields.
    type Event: Clone + Send + 'static;

    /// Our address and card.
    fn account(&self) -> impl Future<Output = Result<AccountView, RequestError>> + Send;
    /// Adds a contact by identity key.
    fn add_contact(
        &self,
        identity: IdentityPublicKey,
    ) -> impl Future<Output = Result<ContactView, RequestError>> + Send;
    /// The contacts.
    fn contacts(&self) -> impl Future<Output = Result<Vec<ContactView>, RequestError>> + Send;
    /// Sends a text (length already checked).
    fn send_text(
        &self,
        to: Address,
        text: String,
    ) -> impl Future<Output = Result<MessageId, RequestError>> + Send;
    /// The conversations.
    fn conversations(
        &self,
    ) -> impl Future<Output = Result<Vec<ConversationView>, RequestError>> + Send;
    /// A newest-first page of history; `before` is a cursor string this API returned
    /// ([`RequestError::BadCursor`] otherwise); `limit` already checked.
    fn messages(
        &self,
        peer: Address,
        before: Option<String>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<MessageView>, RequestError>> + Send;
    /// Marks a conversation read.
    fn mark_read(&self, peer: Address) -> impl Future<Output = Result<(), RequestError>> + Send;
    /// Typing indicator.
    fn set_typing(
        &self,
        peer: Address,
        typing: bool,
    ) -> impl Future<Output = Result<(), RequestError>> + Send;
    /// A receiver of events from now on.
    fn subscribe(&self) -> broadcast::Receiver<Self::Event>;
    /// The API form of an event; `None` for events apps are not shown.
    fn to_api(event: &Self::Event) -> Option<ApiEvent>;
}
