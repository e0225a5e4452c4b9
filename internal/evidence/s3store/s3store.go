// Package s3store keeps evidence blobs in an S3-compatible bucket. It is
// apart from internal/evidence so that only the server, which writes
// blobs, links the S3 client; stellactl verifies with evidence alone.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/spf13/pflag"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
)

// Options locate an S3-compatible bucket for evidence blobs.
type Options struct {
	// Endpoint is host:port of the service.
	Endpoint string
	Bucket   string
	// Prefix is put before every key, such as "stella/".
	Prefix string
	// Insecure talks plain HTTP.
	Insecure bool
	// Credentials; empty reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
	// (or the MinIO equivalents) from the environment.
	AccessKey, SecretKey string
}

// Store keeps blobs in an S3-compatible bucket, as <prefix>sha256/<hex>.
type Store struct {
	client *minio.Client
	o      Options
}

// s3Timeout bounds one request to the bucket.
const s3Timeout = 30 * time.Second

// New connects to the bucket and checks that it exists.
func New(o Options) (*Store, error) {
	creds := credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}})
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	}
	c, err := minio.New(o.Endpoint, &minio.Options{Creds: creds, Secure: !o.Insecure})
	if err != nil {
		return nil, fmt.Errorf("evidence bucket %s at %s: %w", o.Bucket, o.Endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	ok, err := c.BucketExists(ctx, o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("evidence bucket %s at %s: %w", o.Bucket, o.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("evidence bucket %s does not exist at %s; create it first", o.Bucket, o.Endpoint)
	}
	return &Store{client: c, o: o}, nil
}

func (s *Store) key(d v1alpha1.Digest) string {
	return s.o.Prefix + "sha256/" + strings.TrimPrefix(string(d), "sha256:")
}

// Put stores data unless the bucket holds it already.
func (s *Store) Put(data []byte) (v1alpha1.Digest, error) {
	if len(data) > evidence.MaxBlobSize {
		return "", fmt.Errorf("a blob has at most %d bytes, this one %d", evidence.MaxBlobSize, len(data))
	}
	d := evidence.DigestOf(data)
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	if _, err := s.client.StatObject(ctx, s.o.Bucket, s.key(d), minio.StatObjectOptions{}); err == nil {
		return d, nil
	}
	if _, err := s.client.PutObject(ctx, s.o.Bucket, s.key(d), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return "", fmt.Errorf("store blob %s in bucket %s: %w", d, s.o.Bucket, err)
	}
	return d, nil
}

// Get reads a blob and checks its digest.
func (s *Store) Get(d v1alpha1.Digest) ([]byte, error) {
	if err := evidence.CheckDigest(d); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	obj, err := s.client.GetObject(ctx, s.o.Bucket, s.key(d), minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, evidence.MaxBlobSize+1))
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code == minio.NoSuchKey {
		return nil, fmt.Errorf("%w: %s", evidence.ErrNotFound, d)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s from bucket %s: %w", d, s.o.Bucket, err)
	}
	return data, evidence.CheckContent(d, data)
}

// List lists the bucket's blobs under the prefix, oldest first.
func (s *Store) List() ([]evidence.StoredBlob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	var blobs []evidence.StoredBlob
	for obj := range s.client.ListObjects(ctx, s.o.Bucket, minio.ListObjectsOptions{Prefix: s.o.Prefix + "sha256/"}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list the blobs of bucket %s: %w", s.o.Bucket, obj.Err)
		}
		d := v1alpha1.Digest("sha256:" + strings.TrimPrefix(obj.Key, s.o.Prefix+"sha256/"))
		if evidence.CheckDigest(d) == nil {
			blobs = append(blobs, evidence.StoredBlob{Digest: d, Stored: obj.LastModified})
		}
	}
	evidence.SortOldestFirst(blobs)
	return blobs, nil
}

// URI is the blob's s3:// address.
func (s *Store) URI(d v1alpha1.Digest) string {
	return "s3://" + s.o.Bucket + "/" + s.key(d)
}

// Open opens the evidence directory dir, with blobs on disk, or in the
// bucket s3 names when it is set.
func Open(dir string, s3 *Options, log logr.Logger) (*evidence.Sealer, error) {
	if s3 == nil {
		return evidence.OpenSealer(dir, nil, log)
	}
	store, err := New(*s3)
	if err != nil {
		return nil, err
	}
	return evidence.OpenSealer(dir, store, log)
}

// AddFlags registers the --evidence-s3-* flags and returns what they set:
// nil when no endpoint was given.
func AddFlags(fs *pflag.FlagSet) func() *Options {
	o := &Options{}
	fs.StringVar(&o.Endpoint, "evidence-s3-endpoint", "", "host:port of an S3-compatible service for evidence blobs (default: blobs in the evidence directory); credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&o.Bucket, "evidence-s3-bucket", "stella-evidence", "bucket of the evidence blobs; it must exist")
	fs.StringVar(&o.Prefix, "evidence-s3-prefix", "", "key prefix of the evidence blobs in the bucket")
	fs.BoolVar(&o.Insecure, "evidence-s3-insecure", false, "talk plain HTTP to the S3 service")
	return func() *Options {
		if o.Endpoint == "" {
			return nil
		}
		return o
	}
}
