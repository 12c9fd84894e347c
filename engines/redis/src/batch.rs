//! Commands issued in the same moment go to Redis as one pipeline: the first command of a
//! moment schedules a flush behind the requests already runnable on the daemon's thread (the
//! rest of a read buffer's frames), and the flush sends every command queued by then in one
//! write and one channel message to the connection, instead of one each. Each command still
//! gets its own answer, errors included, in order.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Value};
use std::cell::RefCell;
use std::rc::Rc;
use tokio::sync::oneshot;

type Waiting = (Cmd, oneshot::Sender<RedisResult<Value>>);

/// A connection whose commands of one moment travel together. Lives on the daemon's thread.
#[derive(Clone)]
pub struct Batched {
    inner: Rc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    queued: RefCell<Vec<Waiting>>,
}

impl Batched {
    pub fn new(conn: ConnectionManager) -> Batched {
        let queued = RefCell::new(Vec::new());
        Batched {
            inner: Rc::new(Inner { conn, queued }),
        }
    }

    /// Sends `cmd` with the other commands of this moment; answers its own reply.
    pub async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> RedisResult<T> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut queued = self.inner.queued.borrow_mut();
            queued.push((cmd, answer));
            queued.len() == 1
        };
        if first {
            tokio::task::spawn_local(flush(self.inner.clone()));
        }
        let value = answered
            .await
            .map_err(|_| lost("the pipeline's task ended"))??;
        T::from_redis_value(&value.extract_error()?)
    }
}

/// Sends what is queued once the requests runnable now have queued theirs.
async fn flush(inner: Rc<Inner>) {
    tokio::task::yield_now().await;
    let queued = std::mem::take(&mut *inner.queued.borrow_mut());
    let mut pipe = redis::pipe();
    let mut answers = Vec::with_capacity(queued.len());
    for (cmd, answer) in queued {
        pipe.add_command(cmd);
        answers.push(answer);
    }
    let mut conn = inner.conn.clone();
    match conn.req_packed_commands(&pipe, 0, answers.len()).await {
        Ok(values) => {
            let mut values = values.into_iter();
            for answer in answers {
                let value = values
                    .next()
                    .ok_or_else(|| lost("Redis answered fewer commands"));
                let _ = answer.send(value);
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(copy(&e)));
            }
        }
    }
}

/// The same failure for each command of a pipeline that failed whole.
fn copy(e: &RedisError) -> RedisError {
    RedisError::from((e.kind(), "the pipeline failed", e.to_string()))
}

fn lost(why: &'static str) -> RedisError {
    RedisError::from((ErrorKind::IoError, why))
}
