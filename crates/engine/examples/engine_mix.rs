//! The engine benchmark's mix of 100 events (`osprey_engine::testing::mix`) judged a fixed
//! number of times, so that a run's cost can be counted in instructions rather than timed:
//! `cargo xtask bench` runs it under callgrind, counting the judging alone
//! ([`judge_rounds`]), and reports the count per event, which this host's phases (they move
//! the criterion figure by half) do not touch.
//!
//! `engine_mix RULES ROUNDS`, RULES a rules file or `default` for Osprey's default rules.

use std::{hint::black_box, path::PathBuf, process::ExitCode};

use osprey_engine::{
    Engine,
    rules::load_files,
    testing::{default_rules, mix, mix_options},
};
use osprey_model::event::Enriched;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(rules), Some(Ok(rounds))) = (args.first(), args.get(1).map(|n| n.parse::<usize>()))
    else {
        eprintln!("usage: engine_mix RULES|default ROUNDS");
        return ExitCode::from(2);
    };
    let path = if rules == "default" {
        default_rules()
    } else {
        PathBuf::from(rules)
    };
    let res = load_files(&[&path]);
    if !res.is_ok() {
        eprint!("{}", osprey_engine::rules::cli::render_results(&res, false));
        return ExitCode::FAILURE;
    }
    let engine = Engine::new(res.ruleset, mix_options());
    let events = mix();
    let alerts = judge_rounds(&engine, &events, rounds);
    println!("{} events, {alerts} alerts", rounds * events.len());
    ExitCode::SUCCESS
}

/// The judging alone, a function of its own so that an instruction count can be limited to
/// it (`valgrind --tool=callgrind --toggle-collect='engine_mix::judge_rounds'`), leaving out
/// the loading of the rules.
#[inline(never)]
fn judge_rounds(engine: &Engine, events: &[Enriched], rounds: usize) -> usize {
    let mut alerts = 0;
    for _ in 0..rounds {
        for e in events {
            alerts += engine.evaluate(black_box(e)).len();
        }
    }
    alerts
}
