//! Looking things up in the DHT: contact cards and relay descriptors.

use zentalk_crypto::{CryptoRngCore, IdentityPublicKey, NodeId};
use zentalk_dht::net::DhtHandle;
use zentalk_dht::{PrekeyLocator, RelayDescriptor, prekey_period};

use crate::{Client, ClientError, ContactCard, Directory, RelayEntry};

/// Errors of DHT lookups.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The DHT driver failed.
    #[error("dht: {0}")]
    Net(#[from] zentalk_dht::net::NetError),
    /// No record under the key.
    #[error("not found in the DHT")]
    NotFound,
    /// The record did not open or verify.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The record did not validate.
    #[error("record: {0}")]
    Record(#[from] zentalk_dht::RecordError),
}

/// Publishes `client`'s contact card for the period containing `now_ms`; returns how many
/// DHT nodes stored it. `sequence` must grow with every republication (the time in ms will do).
pub async fn publish_card(
    dht: &DhtHandle,
    client: &mut Client,
    rng: &mut impl CryptoRngCore,
    now_ms: u64,
    sequence: u64,
) -> Result<usize, LookupError> {
    let record = client.card_record(rng, now_ms, sequence)?;
    Ok(dht.publish(record).await?)
}

/// Publishes an already signed card record (from [`Client::card_record`]); returns how many
/// DHT nodes stored it.
pub async fn publish_card_record(
    dht: &DhtHandle,
    record: zentalk_dht::Record,
) -> Result<usize, LookupError> {
    Ok(dht.publish(record).await?)
}

/// Finds and verifies the contact card of `identity`.
pub async fn fetch_card(
    dht: &DhtHandle,
    identity: &IdentityPublicKey,
    now_ms: u64,
) -> Result<ContactCard, LookupError> {
    let locator = PrekeyLocator::new(identity, prekey_period(now_ms))?;
    let record = dht
        .find_value(locator.key())
        .await?
        .ok_or(LookupError::NotFound)?;
    let card = ContactCard::from_bytes(&locator.open(&record, now_ms)?)?;
    if card.bundle.identity_key != *identity {
        return Err(LookupError::Client(ClientError::CardSignature));
    }
    Ok(card)
}

/// Builds a directory from the signed descriptors of `relays` found in the DHT; relays whose
/// descriptor is missing or invalid are left out. The lookups run concurrently.
pub async fn directory_from_dht(dht: &DhtHandle, relays: &[NodeId], now_ms: u64) -> Directory {
    let mut lookups = tokio::task::JoinSet::new();
    for (i, node) in relays.iter().copied().enumerate() {
        let dht = dht.clone();
        lookups.spawn(async move { (i, node, dht.find_value(node).await) });
    }
    let mut found = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((i, node, Ok(Some(record)))) = joined else {
            continue;
        };
        let Ok((identity, descriptor)) = RelayDescriptor::from_record(&record, now_ms) else {
            continue;
        };
        if NodeId::of(&identity) != node {
            continue;
        }
        if let Some(entry) = RelayEntry::from_descriptor(&identity, &descriptor) {
            found.push((i, entry));
        }
    }
    // The order of `relays`, whatever order the answers came in.
    found.sort_by_key(|(i, _)| *i);
    Directory::new(found.into_iter().map(|(_, e)| e).collect())
}
