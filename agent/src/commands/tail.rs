//! `osprey tail`: its flags are [`crate::tail::TailArgs`]; following the stream is
//! [`crate::tail::run`].

pub use crate::tail::TailArgs;

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    Ok(crate::tail::run(args).await?)
}
