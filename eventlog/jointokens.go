package eventlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// joinTokens returns the bucket of bootstrap tokens, making it the first time.
func (l *Log) joinTokens(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := l.js.KeyValue(ctx, joinBucket(l.cfg.Stream))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      joinBucket(l.cfg.Stream),
			Description: "logplane bootstrap tokens: a new node's one-time right to join",
			Storage:     jetstream.FileStorage,
			Replicas:    l.cfg.Replicas,
			History:     1,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = l.js.KeyValue(ctx, joinBucket(l.cfg.Stream))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: join tokens: %w", err)
	}
	return kv, nil
}

// PutJoinToken stores a bootstrap token's record under its id; the id must be new.
func (l *Log) PutJoinToken(ctx context.Context, id string, record []byte) error {
	kv, err := l.joinTokens(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, id, record); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: join token %s", ErrExists, id)
		}
		return fmt.Errorf("eventlog: join token: %w", err)
	}
	return nil
}

// TakeJoinToken returns the record of the bootstrap token id and deletes it, so that it is used
// once: of two concurrent takes, one gets ErrNotFound.
func (l *Log) TakeJoinToken(ctx context.Context, id string) ([]byte, error) {
	kv, err := l.joinTokens(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: join token %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: join token: %w", err)
	}
	if err := kv.Purge(ctx, id, jetstream.LastRevision(e.Revision())); err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil, fmt.Errorf("%w: join token %s was just used", ErrNotFound, id)
		}
		return nil, fmt.Errorf("eventlog: join token: %w", err)
	}
	return e.Value(), nil
}
