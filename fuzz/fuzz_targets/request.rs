//! Any message, decoded, parsed and handled by a session against live shared state: every request
//! family's parsing and handling, with whatever earlier inputs left in the registries. The first byte
//! picks the encoding.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use zajel_signal::admission::Admissions;
use zajel_signal::config::Config;
use zajel_signal::identity::ServerIdentity;
use zajel_signal::protocol::codec::{Encoding, decode};
use zajel_signal::session::{Session, Sessions, Transport};
use zajel_signal::state::SharedState;
use zajel_signal::{Clock, ManualClock};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    session: Session,
    clock: Arc<ManualClock>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::default();
        // Rates would turn most inputs away; the fuzzer is to reach the handlers.
        config.sessions.rate_limit_burst = u32::MAX;
        config.sessions.pair_request_burst = u32::MAX;
        config.admission.messages_per_minute_per_ip = u32::MAX;
        config.admission.rendezvous_entries_per_minute_per_ip = u32::MAX;
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let session = runtime.block_on(async {
            let state = SharedState::in_memory(
                clock.clone() as Arc<dyn Clock>,
                &config.rendezvous,
                &config.pairing,
            );
            let sessions = Sessions::new(
                state,
                Admissions::new(config.admission.clone(), clock.clone()),
                config.sessions.clone(),
                ServerIdentity {
                    server_id: "fuzz".into(),
                    endpoint: None,
                    region: None,
                },
            );
            let (session, pushes) = sessions
                .open(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    Transport::WebSocket,
                    Encoding::Json,
                )
                .unwrap();
            // Pushes are dropped: a session that does not read is closed, which is fine here.
            drop(pushes);
            session
        });
        Fixture {
            runtime,
            session,
            clock,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let fixture = fixture();
    let encoding = if selector & 1 == 0 {
        Encoding::Json
    } else {
        Encoding::Cbor
    };
    if selector & 2 != 0 {
        // Let timers and TTLs move too.
        fixture.clock.advance(std::time::Duration::from_secs(
            u64::from(selector >> 2) * 10,
        ));
    }
    fixture
        .runtime
        .block_on(fixture.session.handle(decode(bytes, encoding), encoding));
});
