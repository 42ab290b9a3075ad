//! The hub remembers its refusals in a bounded ring (the last 100) that `status()` and
//! `refusals()` report — the same data the control ops `status` and `refusals` serve.
//! Real TLS clients are refused by a real in-process hub.

use chainsmith_test_support::hub_util;

use chainsmith::hub::{Auth, server::REFUSAL_RING};
use chainsmith::ops::ValidityArg;
use hub_util::{Client, Fixture, username};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_ring_keeps_the_last_hundred_in_order() {
    let fx = Fixture::new();
    fx.device("d1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).expect("ca");
    fx.register("d1", Auth::Ca, None);
    let hub = chainsmith_test_support::hub_util::start_hub(fx.root()).await;
    let id = fx.identity(&["d1", "line2"]);
    let tls = fx.tls(Some(&id));

    // A refused client sees CONNACK 5; the ring already holds the reason at that moment.
    let total = REFUSAL_RING as u64 + 5;
    for i in 1..=total {
        let ghost = format!("ghost-{i}");
        let (_c, ack) = Client::connect(hub.addr, tls.clone(), &ghost, Some(&username(&ghost)))
            .await
            .expect("connect");
        assert_eq!(
            ack.map(|a| a.code),
            Some(rumqttc::mqttbytes::v4::ConnectReturnCode::NotAuthorized)
        );
        let mine = hub.refusals(Some(&ghost), 0);
        assert_eq!(
            mine.len(),
            1,
            "refusal of {ghost} not recorded by CONNACK time"
        );
        assert_eq!(mine[0].seq, i);
        assert_eq!(mine[0].kind, "unknown-device");
        assert!(mine[0].reason.contains(&ghost), "{}", mine[0].reason);
    }

    let st = hub.status();
    assert_eq!(st.port, hub.addr.port());
    assert_eq!(st.addr, hub.addr);
    assert!(!st.echo);
    assert_eq!(st.last_refusal, total);
    assert_eq!(st.refusals.len(), REFUSAL_RING);
    let seqs: Vec<u64> = st.refusals.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (total - REFUSAL_RING as u64 + 1..=total).collect();
    assert_eq!(seqs, want, "oldest dropped first, order kept");
    assert!(
        hub.refusals(Some("ghost-1"), 0).is_empty(),
        "ghost-1 fell out"
    );
    assert_eq!(hub.refusals(None, total - 2).len(), 2);

    // An accepted device leaves no refusal.
    let (_c, ack) = Client::connect(hub.addr, tls.clone(), "d1", Some(&username("d1")))
        .await
        .expect("connect");
    assert_eq!(
        ack.map(|a| a.code),
        Some(rumqttc::mqttbytes::v4::ConnectReturnCode::Success)
    );
    assert_eq!(hub.status().last_refusal, total);
    hub.shutdown().await;
}
