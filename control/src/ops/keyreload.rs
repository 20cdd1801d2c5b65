//! `POST /api/local/keys/reload` on the running bot (what `aegis keys rotate` calls after writing `.env`): re-read
//! the key pair of the running `TRADING_MODE` from `.env` (the process environment still wins, as at start),
//! verify it against the exchange the bot talks to (signed account call; `apiRestrictions` in live), switch the
//! running exchange session to it ([`crate::exchange::keyswitch`]: no restart, no lost order), and record a
//! `switched` key event (fingerprint only) in `DATA_DIR/key-events.jsonl` and, with `DATABASE_URL`, in Postgres.

use super::keys::{self as keymod, KeyEvent};
use super::probe::KeyEnv;
use crate::config::env::EnvSource;
use crate::exchange::{env as xenv, keyswitch, rest::RestClient, startup};
use aegis_shared::config::Config;
use aegis_shared::{Secret, TradingMode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ENV_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The `.env` the running bot was started with (`aegis run` sets it once at start).
pub fn set_env_file(p: &Path) {
    let _ = ENV_FILE.set(p.to_path_buf());
}

fn env_file() -> PathBuf {
    ENV_FILE
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(".env"))
}

/// A refusal: HTTP status and a message for the operator (never key material).
pub type Refusal = (u16, String);

fn fp(creds: &xenv::Credentials) -> String {
    crate::fleet::lease::fingerprint(&Secret::new(creds.api_key.expose().to_string()))
}

/// Re-reads, verifies and switches (see the module docs). `actor` names who asked, for the audit.
pub async fn reload(actor: &str) -> Result<Value, Refusal> {
    let ks = keyswitch::active().ok_or((409, keyswitch::SwitchError::NotLive.to_string()))?;
    let path = env_file();
    let env = EnvSource::load(&path).map_err(|e| (500, e))?;
    let cfg = Config::from_lookup(|k| env.get(k)).map_err(|e| (400, e.to_string()))?;
    let running = ks.endpoints();
    let ends = xenv::Endpoints::for_config(&cfg).ok_or((
        409,
        "TRADING_MODE in .env is now paper: a mode change needs a restart".to_string(),
    ))?;
    if ends.name != running.name {
        return Err((
            409,
            format!(
                "TRADING_MODE in .env is now {} but the bot runs on {}: a mode change needs a restart",
                ends.name, running.name
            ),
        ));
    }
    let which = match cfg.trading_mode {
        TradingMode::Live => KeyEnv::Production,
        _ => KeyEnv::Testnet,
    };
    let (kv, _) = which.vars();
    let creds = xenv::credentials(&cfg)
        .map_err(|e| (400, e.to_string()))?
        .ok_or((
            400,
            format!("{kv} is empty in {}: nothing to switch to", path.display()),
        ))?;
    let new_fp = fp(&creds);
    let old_fp = ks.current().map(|c| fp(&c));
    if old_fp.as_deref() == Some(new_fp.as_str()) {
        return Ok(json!({"ok": true, "switched": false, "fingerprint": new_fp,
            "note": format!("the key in {} (or the environment, which wins) is the key in use", path.display())}));
    }
    // Verified against the exchange the bot talks to, before anything changes.
    let probe = RestClient::new(running, Some(creds.clone())).map_err(|e| (502, e.to_string()))?;
    let _ = probe.sync_time().await;
    startup::prove(&probe, &cfg).await.map_err(|e| {
        (
            422,
            format!(
                "the new key failed verification; still using {}: {e}",
                old_fp.as_deref().unwrap_or("the old key")
            ),
        )
    })?;
    // One key per bot (guide §1.1): the new key's fleet lease first, so the switch cannot make this bot a
    // second user of a key another bot holds.
    crate::fleet::guard::lease_new_key(&new_fp)
        .await
        .map_err(|e| (409, format!("{e}; still using the old key")))?;
    let sw = tokio::task::spawn_blocking(move || ks.switch(creds))
        .await
        .map_err(|_| (500, "the key switch task failed".to_string()));
    let sw = match sw {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            crate::fleet::guard::key_switched(&new_fp, false).await;
            return Err((500, e.to_string()));
        }
        Err(e) => {
            crate::fleet::guard::key_switched(&new_fp, false).await;
            return Err(e);
        }
    };
    crate::fleet::guard::key_switched(&new_fp, true).await;
    let now = crate::journal::now_ms();
    let detail = json!({
        "old_fingerprint": old_fp, "new_fingerprint": new_fp,
        "took_ms": sw.took.as_millis() as u64,
        "switched_at_ms": sw.gateway.switched_at_ms,
        "in_flight": sw.gateway.in_flight, "queried": sw.gateway.queried,
        "ws_api": sw.gateway.ws_api,
        "user_stream": match &sw.user_stream { Ok(m) => m.clone(), Err(e) => format!("FAILED: {e}") },
    });
    tracing::warn!(old = ?old_fp, new = %new_fp, took_ms = sw.took.as_millis() as u64, "API key switched without a restart");
    let mut notes = Vec::new();
    if let Ok(mut store) = keymod::KeyStore::load(&cfg.data_dir) {
        store.observe(which, &new_fp, now);
        let _ = store.save(&cfg.data_dir);
    }
    if let Err(e) = keymod::append_event(
        &cfg.data_dir,
        &KeyEvent {
            ts_ms: now,
            event: "switched".into(),
            environment: which,
            fingerprint: new_fp.clone(),
            actor: actor.to_string(),
            detail: detail.clone(),
        },
    ) {
        notes.push(format!("NOT in the local key-event log: {e}"));
    }
    if let Some(url) = &cfg.database_url {
        let d = detail.clone();
        let fut = async {
            let mut c = crate::db::connect(url.expose()).await?;
            crate::db::records::record_key_event(
                &mut c,
                actor,
                "local",
                "switched",
                which.as_str(),
                Some(&new_fp),
                d,
            )
            .await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), fut).await {
            Ok(Ok(_)) => notes.push("audited in Postgres".into()),
            Ok(Err(e)) => notes.push(format!("NOT audited in Postgres: {e}")),
            Err(_) => notes.push("NOT audited in Postgres: no answer within 5 s".into()),
        }
    }
    Ok(json!({"ok": sw.user_stream.is_ok(), "switched": true, "detail": detail, "notes": notes}))
}
