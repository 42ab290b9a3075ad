//! Who is connected, what each subscribed to, and the retained messages: where a PUBLISH goes.
//! One client id holds one session; a second CONNECT with the same id takes it over (the first
//! is disconnected), as AWS IoT Core does ("MQTT" in the developer guide: "If a client
//! connects with a client ID that is already in use, the existing connection is
//! disconnected").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::events::BrokerEvent;
use super::limits::{MAX_OUTBOX, MAX_RETAINED, MAX_RETAINED_BYTES, MAX_RETAINED_TOTAL_BYTES};
use crate::rules::{Action, Admitted, Rules};
use chainsmith_server::topic::filter_matches;

/// A message on its way to one connection.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it goes at (the lower of the message's and the subscription's).
    pub qos: u8,
    /// Whether it is a retained message sent at SUBSCRIBE.
    pub retain: bool,
}

struct Client {
    conn: u64,
    who: Admitted,
    outbox: mpsc::Sender<Delivery>,
    kick: Option<oneshot::Sender<()>>,
    filters: Vec<(String, u8)>,
}

impl Client {
    /// The highest QoS of this client's subscriptions matching `topic`, if one does.
    fn granted(&self, topic: &str) -> Option<u8> {
        self.filters
            .iter()
            .filter(|(f, _)| filter_matches(f, topic))
            .map(|(_, q)| *q)
            .max()
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    retained: BTreeMap<String, (Bytes, u8)>,
    /// The payload bytes in `retained`, held to [`MAX_RETAINED_TOTAL_BYTES`].
    retained_bytes: usize,
}

impl State {
    /// Keep `payload` as `topic`'s retained message (an empty one clears it, MQTT §3.3.1.3),
    /// within [`MAX_RETAINED`] topics and [`MAX_RETAINED_TOTAL_BYTES`]; false when not kept.
    fn retain(&mut self, topic: &str, payload: &Bytes, qos: u8) -> bool {
        let old = self.retained.get(topic).map_or(0, |(p, _)| p.len());
        if payload.is_empty() {
            self.retained.remove(topic);
            self.retained_bytes -= old;
            return true;
        }
        let total = self.retained_bytes - old + payload.len();
        let room = old > 0 || self.retained.len() < MAX_RETAINED;
        if payload.len() > MAX_RETAINED_BYTES || total > MAX_RETAINED_TOTAL_BYTES || !room {
            return false;
        }
        self.retained
            .insert(topic.to_string(), (payload.clone(), qos));
        self.retained_bytes = total;
        true
    }
}

/// The broker's routing table, shared by every connection.
pub struct Router {
    rules: Arc<dyn Rules>,
    events: tokio::sync::broadcast::Sender<BrokerEvent>,
    state: Mutex<State>,
}

/// A connection's end of the router: its queue and the signal that it was taken over.
pub struct Registration {
    /// This connection's number (a taken-over id's old number no longer matches).
    pub conn: u64,
    /// Messages to deliver.
    pub outbox: mpsc::Receiver<Delivery>,
    /// Fires when another connection took the client id.
    pub taken_over: oneshot::Receiver<()>,
}

impl Router {
    /// A router asking `rules` before each delivery.
    pub fn new(
        rules: Arc<dyn Rules>,
        events: tokio::sync::broadcast::Sender<BrokerEvent>,
    ) -> Router {
        Router {
            rules,
            events,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register an admitted connection as `who.client_id`'s session, taking the id over
    /// from a connection holding it (its subscriptions go with it: clean sessions only).
    pub fn register(&self, conn: u64, who: Admitted) -> Registration {
        let (tx, outbox) = mpsc::channel(MAX_OUTBOX);
        let (kick, taken_over) = oneshot::channel();
        let id = who.client_id.clone();
        let old = self.state().clients.insert(
            id,
            Client {
                conn,
                who,
                outbox: tx,
                kick: Some(kick),
                filters: Vec::new(),
            },
        );
        if let Some(mut old) = old
            && let Some(k) = old.kick.take()
        {
            let _ = k.send(());
        }
        Registration {
            conn,
            outbox,
            taken_over,
        }
    }

    /// Forget connection `conn` of `client_id` (unless another took the id since).
    pub fn release(&self, client_id: &str, conn: u64) {
        let mut s = self.state();
        if s.clients.get(client_id).is_some_and(|c| c.conn == conn) {
            s.clients.remove(client_id);
        }
    }

    /// Whether `client_id` holds a subscription to `filter` now, and how many it holds.
    pub fn subscriptions(&self, client_id: &str, conn: u64, filter: &str) -> (bool, usize) {
        self.state()
            .clients
            .get(client_id)
            .filter(|c| c.conn == conn)
            .map_or((false, 0), |c| {
                (c.filters.iter().any(|(f, _)| f == filter), c.filters.len())
            })
    }

    /// Add (or replace the QoS of) a subscription, then queue the retained messages it matches.
    pub fn subscribe(&self, client_id: &str, conn: u64, filter: &str, qos: u8) {
        let (who, tx, retained) = {
            let mut s = self.state();
            let retained: Vec<(String, Bytes, u8)> = s
                .retained
                .iter()
                .filter(|(t, _)| filter_matches(filter, t))
                .map(|(t, (p, q))| (t.clone(), p.clone(), *q))
                .collect();
            let Some(c) = s.clients.get_mut(client_id).filter(|c| c.conn == conn) else {
                return;
            };
            match c.filters.iter_mut().find(|(f, _)| f == filter) {
                Some(existing) => existing.1 = qos,
                None => c.filters.push((filter.to_string(), qos)),
            }
            (c.who.clone(), c.outbox.clone(), retained)
        };
        for (topic, payload, q) in retained {
            if self.rules.allows(&who, Action::Receive, &topic) {
                let _ = tx.try_send(Delivery {
                    topic,
                    payload,
                    qos: q.min(qos),
                    retain: true,
                });
            }
        }
    }

    /// Remove subscriptions.
    pub fn unsubscribe(&self, client_id: &str, conn: u64, filters: &[String]) {
        if let Some(c) = self
            .state()
            .clients
            .get_mut(client_id)
            .filter(|c| c.conn == conn)
        {
            c.filters.retain(|(f, _)| !filters.contains(f));
        }
    }

    /// Deliver a message to every subscription matching `topic` whose connection's policy
    /// allows `iot:Receive` on it (asked at each delivery, as AWS does: a denied Receive is
    /// not delivered, and the subscriber stays connected); keep it when `retain`
    /// (an empty retained payload clears the topic's, MQTT §3.3.1.3). Returns how many
    /// connections it was queued for.
    pub fn route(&self, topic: &str, payload: &Bytes, qos: u8, retain: bool) -> usize {
        let targets: Vec<(Admitted, mpsc::Sender<Delivery>, u8)> = {
            let mut s = self.state();
            if retain {
                s.retain(topic, payload, qos);
            }
            s.clients
                .values()
                .filter_map(|c| {
                    let granted = c.granted(topic)?;
                    Some((c.who.clone(), c.outbox.clone(), granted.min(qos)))
                })
                .collect()
        };
        let mut queued = 0;
        for (who, tx, q) in targets {
            if !self.may_receive(&who, topic) {
                continue;
            }
            // A full queue: that connection is not reading; the message is dropped for it.
            if tx
                .try_send(Delivery {
                    topic: topic.to_string(),
                    payload: payload.clone(),
                    qos: q,
                    retain: false,
                })
                .is_ok()
            {
                queued += 1;
            }
        }
        queued
    }

    /// How many retained messages are kept, and their payload bytes together.
    pub fn retained(&self) -> (usize, usize) {
        let s = self.state();
        (s.retained.len(), s.retained_bytes)
    }

    /// Deliver a service's reply to connection `conn` of `client_id` alone (fleet
    /// provisioning answers only the connection that asked), when one of its subscriptions
    /// matches `topic` and its policy allows `iot:Receive` there. Returns whether it was queued.
    pub fn reply(&self, client_id: &str, conn: u64, topic: &str, payload: Bytes) -> bool {
        let target = {
            let s = self.state();
            s.clients
                .get(client_id)
                .filter(|c| c.conn == conn)
                .and_then(|c| {
                    let granted = c.granted(topic)?;
                    Some((c.who.clone(), c.outbox.clone(), granted.min(1)))
                })
        };
        let Some((who, tx, qos)) = target else {
            return false;
        };
        if !self.may_receive(&who, topic) {
            return false;
        }
        tx.try_send(Delivery {
            topic: topic.to_string(),
            payload,
            qos,
            retain: false,
        })
        .is_ok()
    }

    /// Whether `who`'s policy allows `iot:Receive` on `topic`; a denial is an event.
    fn may_receive(&self, who: &Admitted, topic: &str) -> bool {
        let allowed = self.rules.allows(who, Action::Receive, topic);
        if !allowed {
            let _ = self.events.send(BrokerEvent::Denied {
                client_id: who.client_id.clone(),
                action: Action::Receive,
                resource: topic.to_string(),
            });
        }
        allowed
    }

    /// Client ids connected now.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state().clients.keys().cloned().collect();
        ids.sort();
        ids
    }
}
