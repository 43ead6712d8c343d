//! Client store: behaviour, encryption at rest, and every error path on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "L2 tests: wall clock for seeds, timing and unique names"
)]

use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sqlx::Connection;
use zentalk_crypto::{Address, AeadKey};
use zentalk_storage::StoreError;
use zentalk_storage::client::{
    ClientStore, Contact, ConversationId, ConversationKind, GroupId, GroupMember, GroupRole,
    KdfParams, MediaId, MediaRecord, MessageId, MessageStatus, NewConversation, NewMessage,
    PAGE_SIZE, PrekeyKind, Room, RoomId,
};
use zeroize::Zeroizing;

const PW: &[u8] = b"correct horse battery staple";

fn addr(n: u8) -> Address {
    Address::from_bytes([n; 32])
}

fn conv(n: u8) -> NewConversation {
    NewConversation {
        id: ConversationId([n; 16]),
        kind: ConversationKind::Direct,
        peer: vec![n; 32],
        title: format!("conversation {n}"),
        created_at_ms: 1,
    }
}

fn msg(c: ConversationId, i: u32, ts: i64, outgoing: bool, text: &str) -> NewMessage {
    let mut id = [0u8; 16];
    id[..16].copy_from_slice(&c.0);
    id[12..].copy_from_slice(&i.to_be_bytes());
    NewMessage {
        id: MessageId(id),
        conversation: c,
        sender: if outgoing { addr(0xAA) } else { addr(0xBB) },
        outgoing,
        timestamp_ms: ts,
        content_type: 0,
        content: text.as_bytes().to_vec(),
        reply_to: None,
        media: None,
        status: MessageStatus::Delivered,
    }
}

async fn new_store(dir: &Path) -> ClientStore {
    ClientStore::create(dir.join("s.zt"), PW, KdfParams::TEST)
        .await
        .unwrap()
}

fn raw(path: &Path) -> sqlx::sqlite::SqliteConnectOptions {
    sqlx::sqlite::SqliteConnectOptions::new().filename(path)
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test]
async fn messages_pages_unread_stars_search() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path()).await;
    let c = conv(1);
    s.create_conversation(&c).await.unwrap();
    s.create_conversation(&conv(2)).await.unwrap();
    // 120 messages, every third outgoing, two sharing a timestamp.
    let msgs: Vec<_> = (0..120u32)
        .map(|i| {
            msg(
                c.id,
                i,
                1000 + i64::from(i / 2),
                i % 3 == 0,
                &format!("message number {i} Hello"),
            )
        })
        .collect();
    let rows = s.insert_messages(&msgs).await.unwrap();
    assert!(rows.iter().all(Option::is_some));
    // Redelivery is a no-op.
    assert_eq!(s.insert_message(&msgs[5]).await.unwrap(), None);

    let p1 = s.conversation_page(&c.id, None).await.unwrap();
    assert_eq!(p1.messages.len(), PAGE_SIZE);
    assert_eq!(p1.messages[0].content, b"message number 119 Hello");
    assert_eq!(p1.messages[1].content, b"message number 118 Hello");
    let p2 = s.conversation_page(&c.id, p1.next).await.unwrap();
    let p3 = s.conversation_page(&c.id, p2.next).await.unwrap();
    assert_eq!(p3.messages.len(), 20);
    assert_eq!(p3.next, None);
    let all: Vec<_> = [p1, p2, p3].into_iter().flat_map(|p| p.messages).collect();
    assert_eq!(all.len(), 120);
    assert!(
        all.windows(2)
            .all(|w| (w[0].timestamp_ms, w[0].row) > (w[1].timestamp_ms, w[1].row))
    );
    assert_eq!(all[119].id, msgs[0].id);
    assert_eq!(all[119].sender, addr(0xAA));

    // Conversation list: unread counts (80 incoming), preview of the newest message.
    let list = s.conversations(10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, c.id);
    assert_eq!(list[0].unread, 80);
    assert_eq!(list[0].preview.as_deref(), Some("message number 119 Hello"));
    assert_eq!(list[0].title, "conversation 1");
    assert_eq!(list[1].unread, 0);
    assert_eq!(list[1].preview, None);

    // Mark read up to a timestamp, then all.
    let n = s.mark_read(&c.id, Some(1009)).await.unwrap();
    assert_eq!(n, 13); // messages 0..=19, minus the 7 outgoing ones
    assert_eq!(s.conversations(10).await.unwrap()[0].unread, 67);
    assert_eq!(s.mark_read(&c.id, None).await.unwrap(), 67);
    assert_eq!(s.conversations(10).await.unwrap()[0].unread, 0);
    assert!(matches!(
        s.mark_read(&ConversationId([9; 16]), None).await,
        Err(StoreError::Missing { .. })
    ));

    // Pin the other conversation: it comes first.
    s.set_pinned(&conv(2).id, true).await.unwrap();
    s.set_muted(&c.id, true).await.unwrap();
    let list = s.conversations(10).await.unwrap();
    assert_eq!(list[0].id, conv(2).id);
    assert!(list[0].pinned && list[1].muted);

    // Stars.
    s.set_starred(&msgs[10].id, true).await.unwrap();
    s.set_starred(&msgs[20].id, true).await.unwrap();
    s.set_starred(&msgs[30].id, true).await.unwrap();
    s.set_starred(&msgs[20].id, false).await.unwrap();
    let starred = s.starred_page(&c.id, None).await.unwrap();
    assert_eq!(
        starred.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![msgs[30].id, msgs[10].id]
    );
    assert!(matches!(
        s.set_starred(&MessageId([7; 16]), true).await,
        Err(StoreError::Missing { .. })
    ));

    // Search decrypts in batches.
    let hits = s
        .search_conversation(&c.id, "NUMBER 11", 100)
        .await
        .unwrap();
    let want: Vec<_> = [119u32, 118, 117, 116, 115, 114, 113, 112, 111, 110, 11]
        .iter()
        .map(|&i| msgs[i as usize].id)
        .collect();
    assert_eq!(hits.iter().map(|m| m.id).collect::<Vec<_>>(), want);
    assert_eq!(
        s.search_conversation(&c.id, "hello", 3)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        s.search_conversation(&c.id, "absent", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.search_conversation(&c.id, "x", 501).await,
        Err(StoreError::TooLarge { .. })
    ));

    // Status, edits, deletion, reactions.
    s.set_status(&msgs[0].id, MessageStatus::Read)
        .await
        .unwrap();
    assert_eq!(
        s.message(&msgs[0].id).await.unwrap().unwrap().status,
        MessageStatus::Read
    );
    s.edit_message(&msgs[1].id, b"edited text", 5000)
        .await
        .unwrap();
    s.edit_message(&msgs[1].id, b"edited again", 5001)
        .await
        .unwrap();
    let m1 = s.message(&msgs[1].id).await.unwrap().unwrap();
    assert_eq!(
        (m1.content.as_slice(), m1.edited_at_ms),
        (&b"edited again"[..], Some(5001))
    );
    assert_eq!(
        s.edit_history(&msgs[1].id).await.unwrap(),
        vec![
            (5000, b"message number 1 Hello".to_vec()),
            (5001, b"edited text".to_vec())
        ]
    );
    s.set_reaction(&msgs[1].id, &addr(3), "👍", 6000)
        .await
        .unwrap();
    s.set_reaction(&msgs[1].id, &addr(4), "❤", 6001)
        .await
        .unwrap();
    s.set_reaction(&msgs[1].id, &addr(3), "😂", 6002)
        .await
        .unwrap();
    let r = s.reactions(&msgs[1].id).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!((r[1].reactor, r[1].reaction.as_str()), (addr(3), "😂"));
    assert!(s.remove_reaction(&msgs[1].id, &addr(4)).await.unwrap());
    s.delete_message(&msgs[1].id, 7000).await.unwrap();
    let m1 = s.message(&msgs[1].id).await.unwrap().unwrap();
    assert!(m1.content.is_empty() && m1.deleted_at_ms == Some(7000));
    assert!(s.edit_history(&msgs[1].id).await.unwrap().is_empty());
    assert!(s.reactions(&msgs[1].id).await.unwrap().is_empty());
    assert!(matches!(
        s.edit_message(&msgs[1].id, b"x", 1).await,
        Err(StoreError::Missing { .. })
    ));
    s.close().await;
}

#[tokio::test]
async fn disappearing_messages_and_reply_media() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path()).await;
    let c = conv(3);
    s.create_conversation(&c).await.unwrap();
    s.set_disappearing(&c.id, 60).await.unwrap();
    let mut m = msg(c.id, 1, 10_000, false, "vanishes");
    m.reply_to = Some(MessageId([5; 16]));
    m.media = Some(MediaId([6; 16]));
    m.content_type = 3;
    s.insert_message(&m).await.unwrap();
    s.set_disappearing(&c.id, 0).await.unwrap();
    s.insert_message(&msg(c.id, 2, 10_001, false, "stays"))
        .await
        .unwrap();
    let got = s.message(&m.id).await.unwrap().unwrap();
    assert_eq!(
        (got.reply_to, got.media, got.expires_at_ms),
        (m.reply_to, m.media, Some(70_000))
    );
    assert_eq!(s.conversations(5).await.unwrap()[0].unread, 2);
    assert_eq!(s.purge_expired(69_999).await.unwrap(), 0);
    assert_eq!(s.purge_expired(70_000).await.unwrap(), 1);
    assert!(s.message(&m.id).await.unwrap().is_none());
    assert_eq!(s.conversations(5).await.unwrap()[0].unread, 1);
    s.close().await;
}

#[tokio::test]
async fn contacts_keys_sessions_media_groups_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path()).await;
    let mut bob = Contact {
        address: addr(2),
        name: "Bob".into(),
        bio: Some("builder".into()),
        public_key: vec![2; 32],
        avatar: Some(MediaId([1; 16])),
        added_at_ms: 5,
        last_seen_ms: None,
        blocked: false,
        favorite: false,
    };
    s.upsert_contact(&bob).await.unwrap();
    let carol = Contact {
        address: addr(3),
        name: "Carol".into(),
        bio: None,
        avatar: None,
        ..bob.clone()
    };
    s.upsert_contact(&carol).await.unwrap();
    assert_eq!(s.contact(&addr(2)).await.unwrap().unwrap(), bob);
    s.set_contact_favorite(&addr(3), true).await.unwrap();
    s.set_contact_blocked(&addr(2), true).await.unwrap();
    s.set_contact_last_seen(&addr(2), 99).await.unwrap();
    let list = s.contacts(10).await.unwrap();
    assert_eq!(
        list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["Carol", "Bob"]
    );
    bob.blocked = true;
    bob.last_seen_ms = Some(99);
    assert_eq!(list[1], bob);
    assert!(matches!(
        s.set_contact_blocked(&addr(9), true).await,
        Err(StoreError::Missing { .. })
    ));
    assert!(s.delete_contact(&addr(3)).await.unwrap());
    assert!(s.contact(&addr(3)).await.unwrap().is_none());

    s.put_session(&addr(2), 1, b"pickle-1", 1).await.unwrap();
    s.put_session(&addr(2), 2, b"pickle-2", 1).await.unwrap();
    assert_eq!(
        s.session(&addr(2), 1).await.unwrap().unwrap().as_slice(),
        b"pickle-1"
    );
    assert!(s.session(&addr(2), 3).await.unwrap().is_none());
    assert_eq!(s.delete_sessions(&addr(2)).await.unwrap(), 2);

    s.put_account_key("identity", &[7; 32], 1).await.unwrap();
    assert_eq!(
        s.account_key("identity").await.unwrap().unwrap().as_slice(),
        &[7; 32]
    );
    assert!(s.account_key("other").await.unwrap().is_none());

    s.put_prekey(1, PrekeyKind::OneTime, b"otk", 1)
        .await
        .unwrap();
    s.put_prekey(2, PrekeyKind::Signed, b"spk", 1)
        .await
        .unwrap();
    assert_eq!(s.one_time_prekeys_left().await.unwrap(), 1);
    let (k, v) = s.take_prekey(1).await.unwrap().unwrap();
    assert_eq!((k, v.as_slice()), (PrekeyKind::OneTime, &b"otk"[..]));
    assert!(
        s.take_prekey(1).await.unwrap().is_none(),
        "one-time prekeys are used once"
    );
    assert!(s.take_prekey(2).await.unwrap().is_some());
    assert!(
        s.take_prekey(2).await.unwrap().is_some(),
        "signed prekeys stay"
    );

    let media = MediaRecord {
        id: MediaId([8; 16]),
        key: AeadKey::new(&mut [9u8; 32]),
        shards: vec![b"node-1/abc".to_vec(), b"node-2/def".to_vec()],
        size: 12345,
    };
    s.put_media(&media, 1).await.unwrap();
    assert_eq!(s.media(&media.id).await.unwrap().unwrap(), media);
    assert!(
        !format!("{media:?}").contains("9, 9"),
        "media key is redacted in Debug"
    );

    let g = GroupId([4; 16]);
    s.put_group(&g, "Climbers", Some(b"sender-key"), 1)
        .await
        .unwrap();
    s.put_group_member(
        &g,
        &GroupMember {
            address: addr(2),
            role: GroupRole::Admin,
            joined_at_ms: 1,
        },
    )
    .await
    .unwrap();
    s.put_group_member(
        &g,
        &GroupMember {
            address: addr(5),
            role: GroupRole::Member,
            joined_at_ms: 2,
        },
    )
    .await
    .unwrap();
    let (name, sk) = s.group(&g).await.unwrap().unwrap();
    assert_eq!(
        (name.as_str(), sk.unwrap().as_slice()),
        ("Climbers", &b"sender-key"[..])
    );
    assert_eq!(s.group_members(&g).await.unwrap().len(), 2);
    assert!(s.remove_group_member(&g, &addr(2)).await.unwrap());
    assert_eq!(s.group_members(&g).await.unwrap()[0].address, addr(5));

    let room = Room {
        id: RoomId([6; 16]),
        name: "night owls".into(),
        pseudonym: Zeroizing::new(vec![1, 2, 3]),
        joined_at_ms: 4,
    };
    s.put_room(&room).await.unwrap();
    assert_eq!(s.room(&room.id).await.unwrap().unwrap(), room);
    assert!(s.delete_room(&room.id).await.unwrap());
    assert!(s.room(&room.id).await.unwrap().is_none());
    assert!(
        !format!("{s:?}").contains("key"),
        "Debug shows no key material"
    );
    s.close().await;
}

/// Random strings written as message content, contact names and bios, conversation titles,
/// previews and session pickles must not appear in the database, its WAL or its journal.
#[tokio::test]
async fn no_plaintext_on_disk() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("no_plaintext_on_disk seed = {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut word = |len: usize| -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..len)
            .map(|_| ALPHA[(rng.next_u32() as usize) % ALPHA.len()] as char)
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap();
    let mut secrets = Vec::new();
    for n in 0..5u8 {
        let title = word(16);
        let c = NewConversation {
            title: title.clone(),
            ..conv(n)
        };
        s.create_conversation(&c).await.unwrap();
        let name = word(16);
        let bio = word(16);
        s.upsert_contact(&Contact {
            address: addr(n),
            name: name.clone(),
            bio: Some(bio.clone()),
            public_key: word(32).into_bytes(),
            avatar: None,
            added_at_ms: 1,
            last_seen_ms: None,
            blocked: false,
            favorite: false,
        })
        .await
        .unwrap();
        let pickle = word(24);
        s.put_session(&addr(n), 1, pickle.as_bytes(), 1)
            .await
            .unwrap();
        let mut batch = Vec::new();
        for i in 0..20u32 {
            let text = word(24);
            secrets.push(text.clone());
            batch.push(msg(c.id, i, 100 + i64::from(i), false, &text));
        }
        s.insert_messages(&batch).await.unwrap();
        secrets.extend([title, name, bio, pickle]);
    }
    let check = |stage: &str| {
        let mut files = Vec::new();
        for suffix in ["", "-wal", "-journal", "-shm"] {
            let p = format!("{}{suffix}", path.display());
            let bytes = file_bytes(Path::new(&p));
            files.push((p, bytes));
        }
        assert!(files[0].1.len() > 4096, "database file exists");
        for (p, bytes) in &files {
            for s in &secrets {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{stage}: plaintext {s:?} found in {p} (seed {seed})"
                );
            }
        }
        files.iter().map(|f| f.1.len()).sum::<usize>()
    };
    let open_total = check("while open");
    s.close().await;
    check("after close");
    assert!(open_total > 0);
    // Sanity: the scanner does find plaintext when it is there.
    let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE canary (v TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO canary VALUES (?)")
        .bind(&secrets[0])
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let bytes = file_bytes(&path);
    assert!(
        bytes
            .windows(secrets[0].len())
            .any(|w| w == secrets[0].as_bytes())
    );
}

#[tokio::test]
async fn wrong_password_is_typed_and_modifies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap();
    s.create_conversation(&conv(1)).await.unwrap();
    s.close().await;
    let before = file_bytes(&path);
    assert!(matches!(
        ClientStore::open(&path, b"wrong").await,
        Err(StoreError::WrongPassword)
    ));
    assert_eq!(
        file_bytes(&path),
        before,
        "a wrong password changes nothing"
    );
    assert!(
        !Path::new(&format!("{}-wal", path.display())).exists()
            || file_bytes(Path::new(&format!("{}-wal", path.display()))).is_empty()
    );
    let s = ClientStore::open(&path, PW).await.unwrap();
    assert_eq!(s.conversations(5).await.unwrap().len(), 1);
    s.close().await;
}

#[tokio::test]
async fn change_password_rekeys_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap();
    s.create_conversation(&conv(1)).await.unwrap();
    s.insert_message(&msg(conv(1).id, 1, 5, false, "kept across re-key"))
        .await
        .unwrap();
    assert!(matches!(
        s.change_password(b"not it", b"new", KdfParams::TEST).await,
        Err(StoreError::WrongPassword)
    ));
    let bad = KdfParams {
        t: 0,
        ..KdfParams::TEST
    };
    assert!(matches!(
        s.change_password(PW, b"new", bad).await,
        Err(StoreError::KdfParams { .. })
    ));
    let stronger = KdfParams {
        m_kib: 128,
        t: 2,
        p: 1,
    };
    s.change_password(PW, b"new password", stronger)
        .await
        .unwrap();
    // The open store keeps working (same data key).
    assert_eq!(
        s.conversation_page(&conv(1).id, None)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    s.close().await;
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::WrongPassword)
    ));
    let s = ClientStore::open(&path, b"new password").await.unwrap();
    let p = s.conversation_page(&conv(1).id, None).await.unwrap();
    assert_eq!(p.messages[0].content, b"kept across re-key");
    s.close().await;
}

/// The production Argon2id parameters (64 MiB, t = 3), once.
#[tokio::test]
async fn production_kdf_parameters_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prod.zt");
    let t = std::time::Instant::now();
    let s = ClientStore::create(&path, PW, KdfParams::PRODUCTION)
        .await
        .unwrap();
    s.close().await;
    println!(
        "create with production Argon2id parameters: {:?}",
        t.elapsed()
    );
    let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
        .await
        .unwrap();
    let (m, tt, p): (i64, i64, i64) =
        sqlx::query_as("SELECT kdf_m_kib, kdf_t, kdf_p FROM store_meta")
            .fetch_one(&mut c)
            .await
            .unwrap();
    c.close().await.unwrap();
    assert_eq!((m, tt, p), (65536, 3, 1));
    assert!(matches!(
        ClientStore::open(&path, b"nope").await,
        Err(StoreError::WrongPassword)
    ));
}

#[tokio::test]
async fn create_and_open_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::NotFound)
    ));
    ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap()
        .close()
        .await;
    assert!(matches!(
        ClientStore::create(&path, PW, KdfParams::TEST).await,
        Err(StoreError::AlreadyExists)
    ));
    let bad = KdfParams {
        m_kib: 1,
        t: 1,
        p: 1,
    };
    assert!(matches!(
        ClientStore::create(dir.path().join("x.zt"), PW, bad).await,
        Err(StoreError::KdfParams { name: "m_kib", .. })
    ));
    assert!(!dir.path().join("x.zt").exists());
}

#[tokio::test]
async fn corrupt_and_foreign_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Random bytes.
    let junk = dir.path().join("junk.zt");
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut bytes = vec![0u8; 16384];
    rng.fill_bytes(&mut bytes);
    std::fs::write(&junk, &bytes).unwrap();
    assert!(matches!(
        ClientStore::open(&junk, PW).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(file_bytes(&junk), bytes);
    // An empty file is an empty database, not a store.
    let empty = dir.path().join("empty.zt");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        ClientStore::open(&empty, PW).await,
        Err(StoreError::Corrupt { .. })
    ));
    // A truncated store.
    let path = dir.path().join("t.zt");
    let s = ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap();
    s.create_conversation(&conv(1)).await.unwrap();
    let many: Vec<_> = (0..400u32)
        .map(|i| msg(conv(1).id, i, i64::from(i), false, &"x".repeat(200)))
        .collect();
    s.insert_messages(&many).await.unwrap();
    s.close().await;
    let full = file_bytes(&path);
    std::fs::write(&path, &full[..full.len() / 3]).unwrap();
    let r = match ClientStore::open(&path, PW).await {
        Ok(s) => {
            // Page 1 may still be intact: then the damage shows on first read.
            let r = s.conversation_page(&conv(1).id, None).await.map(|_| ());
            s.close().await;
            r
        }
        Err(e) => Err(e),
    };
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    // A valid header with a damaged store_meta.
    std::fs::write(&path, &full).unwrap();
    let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
        .await
        .unwrap();
    sqlx::query("UPDATE store_meta SET wrapped_data_key = x'0102'")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn tampered_moved_and_truncated_ciphertexts_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap();
    s.create_conversation(&conv(1)).await.unwrap();
    let a = msg(conv(1).id, 1, 1, false, "first");
    let b = msg(conv(1).id, 2, 2, false, "second");
    s.insert_messages(&[a.clone(), b.clone()]).await.unwrap();
    s.close().await;
    let edit = |sql: &'static str| {
        let path = path.clone();
        async move {
            let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    };
    // Move row 1's content into row 2: authentication binds the row id.
    edit(
        "UPDATE messages SET body_enc = (SELECT body_enc FROM messages WHERE id = 1) WHERE id = 2",
    )
    .await;
    let s = ClientStore::open(&path, PW).await.unwrap();
    match s.message(&b.id).await {
        Err(StoreError::Tampered {
            table: "messages",
            column: "body_enc",
        }) => {}
        other => panic!("expected Tampered, got {other:?}"),
    }
    assert_eq!(s.message(&a.id).await.unwrap().unwrap().content, b"first");
    s.close().await;
    // Move a title into the preview column of the same row: the column is bound too.
    edit("UPDATE conversations SET preview_enc = title_enc").await;
    let s = ClientStore::open(&path, PW).await.unwrap();
    assert!(matches!(
        s.conversations(5).await,
        Err(StoreError::Tampered {
            column: "preview_enc",
            ..
        })
    ));
    s.close().await;
    // Truncate a ciphertext.
    edit("UPDATE messages SET body_enc = substr(body_enc, 1, 10) WHERE id = 1").await;
    let s = ClientStore::open(&path, PW).await.unwrap();
    assert!(matches!(
        s.message(&a.id).await,
        Err(StoreError::TruncatedCiphertext {
            expected: 30,
            found: 10,
            ..
        })
    ));
    s.close().await;
}

#[tokio::test]
async fn unknown_format_version_and_newer_migration_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    ClientStore::create(&path, PW, KdfParams::TEST)
        .await
        .unwrap()
        .close()
        .await;
    let exec = |sql: &'static str| {
        let path = path.clone();
        async move {
            let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    };
    exec("UPDATE store_meta SET format_version = 7").await;
    let before = file_bytes(&path);
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::UnknownFormatVersion {
            expected: 1,
            found: 7
        })
    ));
    assert_eq!(file_bytes(&path), before);
    exec("UPDATE store_meta SET format_version = 1").await;
    exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', 1, x'00', 0)",
    )
    .await;
    let before = file_bytes(&path);
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::NewerSchema {
            found: 99990101000000,
            ..
        })
    ));
    assert_eq!(file_bytes(&path), before);
    exec("UPDATE _sqlx_migrations SET success = 0").await;
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::Corrupt { .. })
    ));
    exec("UPDATE store_meta SET kdf_m_kib = 99999999").await;
    exec("DELETE FROM _sqlx_migrations WHERE version = 99990101000000").await;
    exec("UPDATE _sqlx_migrations SET success = 1").await;
    assert!(matches!(
        ClientStore::open(&path, PW).await,
        Err(StoreError::KdfParams { name: "m_kib", .. })
    ));
}

#[tokio::test]
async fn failed_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path()).await;
    s.create_conversation(&conv(1)).await.unwrap();
    let good = msg(conv(1).id, 1, 1, false, "good");
    let orphan = msg(
        ConversationId([42; 16]),
        2,
        2,
        false,
        "no such conversation",
    );
    assert!(matches!(
        s.insert_messages(&[good.clone(), orphan]).await,
        Err(StoreError::Missing { .. })
    ));
    assert!(s.message(&good.id).await.unwrap().is_none());
    assert_eq!(s.conversations(5).await.unwrap()[0].unread, 0);
    let mut big = good.clone();
    big.content = vec![0; zentalk_storage::client::MAX_CONTENT_LEN + 1];
    assert!(matches!(
        s.insert_messages(&[good.clone(), big]).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert!(s.message(&good.id).await.unwrap().is_none());
    // Same id twice in one batch: stored once.
    let r = s
        .insert_messages(&[good.clone(), good.clone()])
        .await
        .unwrap();
    assert!(r[0].is_some() && r[1].is_none());
    assert_eq!(s.conversations(5).await.unwrap()[0].unread, 1);
    s.close().await;
}

/// Random byte damage anywhere in a valid store file (seeded; the seed is printed): opening
/// and reading either work or return a typed error; nothing panics.
#[tokio::test]
async fn random_file_damage_never_panics() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("random_file_damage_never_panics seed = {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.zt");
    let s = ClientStore::create(&pristine, PW, KdfParams::TEST)
        .await
        .unwrap();
    s.create_conversation(&conv(1)).await.unwrap();
    let msgs: Vec<_> = (0..300u32)
        .map(|i| msg(conv(1).id, i, i64::from(i), i % 2 == 0, "some text here"))
        .collect();
    s.insert_messages(&msgs).await.unwrap();
    s.upsert_contact(&Contact {
        address: addr(9),
        name: "Dora".into(),
        bio: None,
        public_key: vec![1; 32],
        avatar: None,
        added_at_ms: 1,
        last_seen_ms: None,
        blocked: false,
        favorite: false,
    })
    .await
    .unwrap();
    s.close().await;
    let bytes = file_bytes(&pristine);
    let (mut opened, mut refused, mut read_errors) = (0, 0, 0);
    for round in 0..40 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.next_u32() % 8 {
            let at = rng.next_u32() as usize % damaged.len();
            damaged[at] ^= 1 + (rng.next_u32() % 255) as u8;
        }
        let path = dir.path().join(format!("d{round}.zt"));
        std::fs::write(&path, &damaged).unwrap();
        match ClientStore::open(&path, PW).await {
            Ok(s) => {
                opened += 1;
                let results = [
                    s.conversation_page(&conv(1).id, None).await.map(|_| ()),
                    s.conversations(10).await.map(|_| ()),
                    s.contacts(10).await.map(|_| ()),
                    s.search_conversation(&conv(1).id, "text", 5)
                        .await
                        .map(|_| ()),
                ];
                read_errors += results.iter().filter(|r| r.is_err()).count();
                s.close().await;
            }
            Err(_) => refused += 1,
        }
    }
    println!(
        "damage rounds: {opened} opened ({read_errors} typed read errors), {refused} refused with typed errors"
    );
    assert_eq!(opened + refused, 40);
}

/// Count of `message_tags` entries per level, read from the file after the store closed.
async fn tag_levels(path: &Path) -> Vec<(i64, i64)> {
    let mut c = sqlx::SqliteConnection::connect_with(&raw(path))
        .await
        .unwrap();
    let v: Vec<(i64, i64)> =
        sqlx::query_as("SELECT level, count(*) FROM message_tags GROUP BY level ORDER BY level")
            .fetch_all(&mut c)
            .await
            .unwrap();
    c.close().await.unwrap();
    v
}

/// The message-id index is leveled (schema version 2): level 0 is merged into level 1 once it
/// holds more than `TAG_LEVEL0_MAX` entries; lookups, redelivery detection and deletions work
/// whatever level an id is in.
#[tokio::test]
async fn message_id_index_levels_merge_and_stay_exact() {
    use zentalk_storage::client::TAG_LEVEL0_MAX;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = new_store(dir.path()).await;
    s.create_conversation(&conv(1)).await.unwrap();
    s.create_conversation(&conv(2)).await.unwrap();
    let level0 = usize::try_from(TAG_LEVEL0_MAX).unwrap();
    // Enough batches to overflow level 0 once, plus a few hundred that stay in level 0.
    let all: Vec<NewMessage> = (0..level0 as u32 + 700)
        .map(|i| msg(conv(1 + (i % 2) as u8).id, i, i64::from(i), false, "x"))
        .collect();
    for chunk in all.chunks(1000) {
        assert!(
            s.insert_messages(chunk)
                .await
                .unwrap()
                .iter()
                .all(Option::is_some)
        );
    }
    // Redeliveries are detected in both levels, also mixed with new ids in one batch.
    let old = all[5].clone(); // merged into level 1
    let recent = all[all.len() - 3].clone(); // still in level 0
    let new = msg(conv(1).id, 999_999, 5, false, "new");
    let r = s
        .insert_messages(&[old.clone(), recent.clone(), new.clone()])
        .await
        .unwrap();
    assert_eq!((r[0], r[1]), (None, None));
    assert!(r[2].is_some());
    for m in [&old, &recent, &new] {
        assert_eq!(s.message(&m.id).await.unwrap().unwrap().id, m.id);
        s.set_starred(&m.id, true).await.unwrap();
    }
    // Deleting a conversation removes its messages' ids from every level: they can be
    // stored again afterwards.
    assert!(s.delete_conversation(&conv(2).id).await.unwrap());
    let odd = all[1].clone(); // conversation 2
    assert!(s.message(&odd.id).await.unwrap().is_none());
    s.create_conversation(&conv(2)).await.unwrap();
    assert!(s.insert_message(&odd).await.unwrap().is_some());
    s.close().await;
    let levels = tag_levels(&path).await;
    let total: i64 = levels.iter().map(|l| l.1).sum();
    // Half of the messages went with conversation 2; one came back; one new one.
    assert_eq!(total, (all.len() as i64 + 1) / 2 + 2, "{levels:?}");
    assert!(
        levels.iter().any(|l| l.0 == 1 && l.1 > TAG_LEVEL0_MAX / 2),
        "{levels:?}"
    );
    assert!(
        levels.iter().all(|l| l.0 != 0 || l.1 <= TAG_LEVEL0_MAX),
        "{levels:?}"
    );
}

/// A store written with schema version 1 (`tests/vectors/client_store_v1.zt`, made by the
/// version-1 code: password "fixture password v1", one conversation, messages with ids [i; 16]
/// for i in 0..20, message 3 starred, a reaction on 4, an edit of 5) opens, is migrated to
/// version 2 and keeps every message, reaction and edit.
#[tokio::test]
async fn version_1_store_is_migrated_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.zt");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/client_store_v1.zt"),
        &path,
    )
    .unwrap();
    assert!(matches!(
        ClientStore::open(&path, b"wrong").await,
        Err(StoreError::WrongPassword)
    ));
    let s = ClientStore::open(&path, b"fixture password v1")
        .await
        .unwrap();
    let c = ConversationId([0x11; 16]);
    let page = s.conversation_page(&c, None).await.unwrap();
    assert_eq!(page.messages.len(), 20);
    for m in &page.messages {
        let i = m.id.0[0];
        assert_eq!(m.id, MessageId([i; 16]));
        let want = if i == 5 {
            "fixture message 5 edited".to_string()
        } else {
            format!("fixture message {i}")
        };
        assert_eq!(m.content, want.as_bytes());
        assert_eq!(m.starred, i == 3);
    }
    assert_eq!(
        s.message(&MessageId([7; 16]))
            .await
            .unwrap()
            .unwrap()
            .content,
        b"fixture message 7"
    );
    let r = s.reactions(&MessageId([4; 16])).await.unwrap();
    assert_eq!((r.len(), r[0].reaction.as_str()), (1, "+1"));
    let h = s.edit_history(&MessageId([5; 16])).await.unwrap();
    assert_eq!(h, vec![(3_000, b"fixture message 5".to_vec())]);
    // Redelivery of a version-1 message is still detected; new messages get new rows.
    let mut again = msg(c, 0, 1_000, false, "again");
    again.id = MessageId([9; 16]);
    assert_eq!(s.insert_message(&again).await.unwrap(), None);
    let fresh = msg(c, 77, 5_000, false, "after the upgrade");
    let row = s.insert_message(&fresh).await.unwrap().unwrap();
    assert!(row > page.messages.iter().map(|m| m.row).max().unwrap());
    // Deleting a migrated message still cascades to its reaction.
    s.delete_message(&MessageId([4; 16]), 9_000).await.unwrap();
    assert!(s.reactions(&MessageId([4; 16])).await.unwrap().is_empty());
    s.close().await;
    let levels = tag_levels(&path).await;
    assert_eq!(levels, vec![(0, 1), (2, 20)]);
    // Reopening does not migrate again.
    ClientStore::open(&path, b"fixture password v1")
        .await
        .unwrap()
        .close()
        .await;
}

/// The conversation-page index is leveled (schema version 3): pages, cursors, mark-read and
/// conversation deletion stay exact when a conversation's messages sit in both levels.
#[tokio::test]
async fn page_index_levels_keep_pages_exact() {
    use zentalk_storage::client::PAGE_LEVEL0_MAX;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zt");
    let s = new_store(dir.path()).await;
    for c in 1..=3 {
        s.create_conversation(&conv(c)).await.unwrap();
    }
    let n = u32::try_from(PAGE_LEVEL0_MAX).unwrap() + 1_500;
    // Conversation 1 gets every third message; timestamps repeat in pairs (ties broken by
    // row), and arrive out of order within a batch.
    let all: Vec<NewMessage> = (0..n)
        .map(|i| {
            let ts = i64::from((i ^ 1) / 2);
            msg(conv(1 + (i % 3) as u8).id, i, ts, i % 2 == 0, "m")
        })
        .collect();
    for chunk in all.chunks(1000) {
        s.insert_messages(chunk).await.unwrap();
    }
    let levels: Vec<(i64, i64)> = {
        s.close().await;
        let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
            .await
            .unwrap();
        let v = sqlx::query_as(
            "SELECT level, count(*) FROM message_pages GROUP BY level ORDER BY level",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        v
    };
    assert_eq!(levels.len(), 2, "entries in both levels: {levels:?}");
    let s = ClientStore::open(&path, PW).await.unwrap();
    let mut want: Vec<(i64, i64)> = Vec::new();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = s.conversation_page(&conv(1).id, cursor).await.unwrap();
        seen.extend(p.messages.iter().map(|m| (m.timestamp_ms, m.row)));
        assert!(p.messages.iter().all(|m| m.conversation == conv(1).id));
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for m in all.iter().filter(|m| m.conversation == conv(1).id) {
        want.push((m.timestamp_ms, s.message(&m.id).await.unwrap().unwrap().row));
    }
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, want, "every message once, newest first");
    // Mark read up to a timestamp in the middle: counts incoming messages of both levels.
    let mid = i64::from(n / 4);
    let expect = all
        .iter()
        .filter(|m| m.conversation == conv(1).id && !m.outgoing && m.timestamp_ms <= mid)
        .count() as u64;
    assert_eq!(s.mark_read(&conv(1).id, Some(mid)).await.unwrap(), expect);
    // Deleting a conversation removes its messages from both levels and both indexes.
    let victim = all.iter().find(|m| m.conversation == conv(2).id).unwrap();
    assert!(s.delete_conversation(&conv(2).id).await.unwrap());
    assert!(s.message(&victim.id).await.unwrap().is_none());
    assert!(
        s.conversation_page(&conv(2).id, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // Conversation 3 is untouched and a new message still lands on its first page.
    let fresh = msg(conv(3).id, 999_999, i64::MAX / 2, false, "newest");
    s.insert_message(&fresh).await.unwrap();
    let p3 = s.conversation_page(&conv(3).id, None).await.unwrap();
    assert_eq!(p3.messages[0].id, fresh.id);
    s.close().await;
    let mut c = sqlx::SqliteConnection::connect_with(&raw(&path))
        .await
        .unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_pages WHERE message_row NOT IN (SELECT id FROM messages)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    c.close().await.unwrap();
}
