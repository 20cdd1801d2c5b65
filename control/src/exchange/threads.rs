//! The engine thread of a testnet/live run and what must be stopped after it, in order (the REST worker, the
//! user data stream, the periodic tasks). Both markets' starts build one; the engine link only waits for it.

use crate::engine_link::EngineThread;

/// The engine thread (`T`: its report), then the stops to run once it has ended.
pub struct RunThreads<T> {
    engine: std::thread::JoinHandle<T>,
    after: Vec<Box<dyn FnOnce() + Send>>,
}

impl<T> RunThreads<T> {
    /// Nothing to stop yet but the engine.
    pub fn new(engine: std::thread::JoinHandle<T>) -> Self {
        Self {
            engine,
            after: Vec::new(),
        }
    }

    /// Runs `stop` after the engine has ended and after every stop added before it.
    pub fn then(mut self, stop: impl FnOnce() + Send + 'static) -> Self {
        self.after.push(Box::new(stop));
        self
    }

    /// Aborts `task` after the engine has ended (a periodic task of the control runtime).
    pub fn abort(self, task: Option<tokio::task::JoinHandle<()>>) -> Self {
        self.then(move || {
            if let Some(t) = task {
                t.abort();
            }
        })
    }
}

impl<T: Send + 'static> EngineThread for RunThreads<T> {
    fn is_finished(&self) -> bool {
        self.engine.is_finished()
    }
    fn join(self: Box<Self>) {
        let s = *self;
        let _ = s.engine.join();
        for stop in s.after {
            stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_stops_run_after_the_engine_in_the_order_they_were_added() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let engine = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            s2.lock().unwrap().push("engine");
        });
        let (a, b) = (seen.clone(), seen.clone());
        let t = RunThreads::new(engine)
            .then(move || a.lock().unwrap().push("first"))
            .then(move || b.lock().unwrap().push("second"));
        Box::new(t).join();
        assert_eq!(*seen.lock().unwrap(), ["engine", "first", "second"]);
    }
}
