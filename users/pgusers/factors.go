package pgusers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessiond/sessiond/users"
)

var _ users.Factors = (*DB)(nil)

// sweepBatch is the most expired challenges PutChallenge deletes: each Put
// adds one and takes away up to this many, so the expired ones cannot pile
// up, and no Put does more than a bounded amount of work.
const sweepBatch = 64

// factorErr maps err from op: a broken foreign key (SQLSTATE 23503: the
// user is gone) to users.ErrNotFound, anything else to a technical
// failure.
func factorErr(op string, err error) error {
	var e *pgconn.PgError
	if errors.As(err, &e) && e.Code == "23503" {
		return users.ErrNotFound
	}
	return fmt.Errorf("pgusers: %s: %w", op, err)
}

// TOTP implements users.Factors.
func (db *DB) TOTP(ctx context.Context, userID string) (*users.TOTP, error) {
	t := users.TOTP{UserID: userID}
	var created pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT secret, confirmed, last_step, created_at FROM sessiond_user_totp WHERE user_id = $1`, userID).
		Scan(&t.Secret, &t.Confirmed, &t.LastStep, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr("totp", err)
	}
	if t.CreatedAt, err = decodeTime(created); err != nil {
		return nil, factorErr("totp", err)
	}
	return &t, nil
}

// PutTOTP implements users.Factors. It returns users.ErrNotFound if there
// is no such user.
func (db *DB) PutTOTP(ctx context.Context, t *users.TOTP) error {
	if err := users.ValidateTOTP(t); err != nil {
		return err
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO sessiond_user_totp (user_id, secret, confirmed, last_step, created_at)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM sessiond_users WHERE id = $1)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed,
			last_step = excluded.last_step, created_at = excluded.created_at`,
		t.UserID, t.Secret, t.Confirmed, t.LastStep, encodeTime(t.CreatedAt))
	if err != nil {
		return factorErr("put totp", err)
	}
	if tag.RowsAffected() == 0 {
		return users.ErrNotFound
	}
	return nil
}

// UseTOTPStep implements users.Factors. The check of the last step and the
// write are one UPDATE: of two at once, the second waits for the first's
// row lock, then finds the raised step and changes nothing.
func (db *DB) UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) error {
	tag, err := db.pool.Exec(ctx, `UPDATE sessiond_user_totp SET last_step = $2, confirmed = confirmed OR $3
		WHERE user_id = $1 AND last_step < $2`, userID, step, confirm)
	if err != nil {
		return factorErr("use totp step", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessiond_user_totp WHERE user_id = $1)`, userID).Scan(&exists); err != nil {
		return factorErr("use totp step", err)
	}
	if !exists {
		return users.ErrNotFound
	}
	return users.ErrReplay
}

// DeleteTOTP implements users.Factors.
func (db *DB) DeleteTOTP(ctx context.Context, userID string) error {
	return db.execOne(ctx, "delete totp", `DELETE FROM sessiond_user_totp WHERE user_id = $1`, userID)
}

// execOne runs a DELETE or an UPDATE and returns users.ErrNotFound if it
// changed no row.
func (db *DB) execOne(ctx context.Context, op, sql string, args ...any) error {
	tag, err := db.pool.Exec(ctx, sql, args...)
	if err != nil {
		return factorErr(op, err)
	}
	if tag.RowsAffected() == 0 {
		return users.ErrNotFound
	}
	return nil
}

// lockUser locks the row of user id in tx against other changes of the
// user's factors (but not against foreign-key checks) until tx ends, and
// returns users.ErrNotFound if there is no such user.
func lockUser(ctx context.Context, tx pgx.Tx, op, id string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM sessiond_users WHERE id = $1 FOR NO KEY UPDATE`, id).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return factorErr(op, err)
	}
	return nil
}

// SetRecoveryCodes implements users.Factors. It returns users.ErrNotFound
// if there is no such user.
func (db *DB) SetRecoveryCodes(ctx context.Context, userID string, hashes [][]byte) error {
	if err := users.ValidateRecoveryCodeHashes(hashes); err != nil {
		return err
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return factorErr("set recovery codes", err)
	}
	defer tx.Rollback(ctx)
	if err := lockUser(ctx, tx, "set recovery codes", userID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM sessiond_user_recovery_codes WHERE user_id = $1`, userID); err != nil {
		return factorErr("set recovery codes", err)
	}
	if len(hashes) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO sessiond_user_recovery_codes (user_id, hash)
			SELECT DISTINCT $1::text, h FROM unnest($2::bytea[]) AS h`, userID, hashes); err != nil {
			return factorErr("set recovery codes", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return factorErr("set recovery codes", err)
	}
	return nil
}

// UseRecoveryCode implements users.Factors: one DELETE, which only one of
// several at once can make.
func (db *DB) UseRecoveryCode(ctx context.Context, userID string, hash []byte) error {
	return db.execOne(ctx, "use recovery code", `DELETE FROM sessiond_user_recovery_codes WHERE user_id = $1 AND hash = $2`, userID, hash)
}

// RecoveryCodesLeft implements users.Factors.
func (db *DB) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM sessiond_user_recovery_codes WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, factorErr("recovery codes left", err)
	}
	return n, nil
}

// passkeyColumns lists the stored fields of a passkey in the order
// scanPasskey reads them.
const passkeyColumns = `credential_id, user_id, name, public_key, attestation_type, aaguid, sign_count,
	transports, user_verified, backup_eligible, backup_state, created_at, last_used_at`

// passkeyKey is the name of the primary key of sessiond_user_passkeys.
const passkeyKey = "sessiond_user_passkeys_pkey"

// AddPasskey implements users.Factors. It returns users.ErrNotFound if
// there is no such user. It locks the user's row before it counts the
// passkeys, so that concurrent adds take turns and cannot pass
// MaxPasskeys.
func (db *DB) AddPasskey(ctx context.Context, p *users.Passkey) error {
	if err := users.ValidatePasskey(p); err != nil {
		return err
	}
	transports, aaguid := p.Transports, p.AAGUID
	if transports == nil {
		transports = []string{} // pgx sends a nil slice as NULL
	}
	if aaguid == nil {
		aaguid = []byte{}
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return factorErr("add passkey", err)
	}
	defer tx.Rollback(ctx)
	if err := lockUser(ctx, tx, "add passkey", p.UserID); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM sessiond_user_passkeys WHERE user_id = $1`, p.UserID).Scan(&n); err != nil {
		return factorErr("add passkey", err)
	}
	if n >= users.MaxPasskeys {
		return fmt.Errorf("%w: at most %d passkeys per user", users.ErrInvalid, users.MaxPasskeys)
	}
	_, err = tx.Exec(ctx, `INSERT INTO sessiond_user_passkeys (`+passkeyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		p.CredentialID, p.UserID, p.Name, p.PublicKey, p.AttestationType, aaguid, int64(p.SignCount),
		transports, p.UserVerified, p.BackupEligible, p.BackupState, encodeTime(p.CreatedAt), encodeTime(p.LastUsedAt))
	var e *pgconn.PgError
	switch {
	case errors.As(err, &e) && e.Code == "23505" && e.ConstraintName == passkeyKey:
		return users.ErrExists
	case err != nil:
		return factorErr("add passkey", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return factorErr("add passkey", err)
	}
	return nil
}

// scanPasskey reads the columns passkeyColumns names from sc.
func scanPasskey(sc pgx.Row) (*users.Passkey, error) {
	var (
		p             users.Passkey
		signCount     int64
		created, used pgtype.Timestamptz
	)
	if err := sc.Scan(&p.CredentialID, &p.UserID, &p.Name, &p.PublicKey, &p.AttestationType, &p.AAGUID, &signCount,
		&p.Transports, &p.UserVerified, &p.BackupEligible, &p.BackupState, &created, &used); err != nil {
		return nil, err
	}
	if len(p.Transports) == 0 {
		p.Transports = nil
	}
	if len(p.AAGUID) == 0 {
		p.AAGUID = nil
	}
	p.SignCount = uint32(signCount)
	var err error
	if p.CreatedAt, err = decodeTime(created); err != nil {
		return nil, fmt.Errorf("passkey created_at: %w", err)
	}
	if p.LastUsedAt, err = decodeTime(used); err != nil {
		return nil, fmt.Errorf("passkey last_used_at: %w", err)
	}
	return &p, nil
}

// Passkeys implements users.Factors: oldest first, by CreatedAt, then in
// the order they were added.
func (db *DB) Passkeys(ctx context.Context, userID string) ([]*users.Passkey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+passkeyColumns+` FROM sessiond_user_passkeys WHERE user_id = $1
		ORDER BY created_at NULLS FIRST, seq`, userID)
	if err != nil {
		return nil, factorErr("passkeys", err)
	}
	list, err := pgx.AppendRows([]*users.Passkey(nil), rows, func(row pgx.CollectableRow) (*users.Passkey, error) { return scanPasskey(row) })
	if err != nil {
		return nil, factorErr("passkeys", err)
	}
	return list, nil
}

// PasskeyByID implements users.Factors.
func (db *DB) PasskeyByID(ctx context.Context, credentialID []byte) (*users.Passkey, error) {
	if users.ValidateCredentialID(credentialID) != nil {
		return nil, users.ErrNotFound
	}
	p, err := scanPasskey(db.pool.QueryRow(ctx, `SELECT `+passkeyColumns+` FROM sessiond_user_passkeys WHERE credential_id = $1`, credentialID))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr("passkey by id", err)
	}
	return p, nil
}

// UsePasskey implements users.Factors.
func (db *DB) UsePasskey(ctx context.Context, credentialID []byte, signCount uint32, backupState bool, at time.Time) error {
	return db.execOne(ctx, "use passkey", `UPDATE sessiond_user_passkeys SET sign_count = $2, backup_state = $3, last_used_at = $4
		WHERE credential_id = $1`, credentialID, int64(signCount), backupState, encodeTime(at))
}

// RenamePasskey implements users.Factors.
func (db *DB) RenamePasskey(ctx context.Context, userID string, credentialID []byte, name string) error {
	if err := users.ValidatePasskeyName(name); err != nil {
		return err
	}
	return db.execOne(ctx, "rename passkey", `UPDATE sessiond_user_passkeys SET name = $3 WHERE user_id = $1 AND credential_id = $2`,
		userID, credentialID, name)
}

// DeletePasskey implements users.Factors.
func (db *DB) DeletePasskey(ctx context.Context, userID string, credentialID []byte) error {
	return db.execOne(ctx, "delete passkey", `DELETE FROM sessiond_user_passkeys WHERE user_id = $1 AND credential_id = $2`,
		userID, credentialID)
}

// FactorSummaries implements users.Factors, in one query.
func (db *DB) FactorSummaries(ctx context.Context, userIDs []string) (map[string]users.FactorSummary, error) {
	out := make(map[string]users.FactorSummary, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT u.id,
			EXISTS (SELECT 1 FROM sessiond_user_totp t WHERE t.user_id = u.id AND t.confirmed),
			(SELECT count(*) FROM sessiond_user_passkeys p WHERE p.user_id = u.id),
			(SELECT count(*) FROM sessiond_user_recovery_codes r WHERE r.user_id = u.id)
		FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS ids (id)) u`, userIDs)
	if err != nil {
		return nil, factorErr("factor summaries", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id                 string
			s                  users.FactorSummary
			passkeys, recovery int64
		)
		if err := rows.Scan(&id, &s.TOTP, &passkeys, &recovery); err != nil {
			return nil, factorErr("factor summaries", err)
		}
		s.Passkeys, s.RecoveryCodes = int(passkeys), int(recovery)
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, factorErr("factor summaries", err)
	}
	return out, nil
}

// ResetFactors implements users.Factors, in one transaction that locks
// the user's row first, as Update does: of a reset and another change
// from one version, one wins and the other gets users.ErrConflict.
func (db *DB) ResetFactors(ctx context.Context, u *users.User) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return factorErr("reset factors", err)
	}
	defer tx.Rollback(ctx)
	var version int64
	err = tx.QueryRow(ctx, `SELECT version FROM sessiond_users WHERE id = $1 FOR UPDATE`, u.ID).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return factorErr("reset factors", err)
	case version != u.Version:
		return users.ErrConflict
	}
	for _, q := range []string{
		`DELETE FROM sessiond_user_totp WHERE user_id = $1`,
		`DELETE FROM sessiond_user_recovery_codes WHERE user_id = $1`,
		`DELETE FROM sessiond_user_passkeys WHERE user_id = $1`,
		`UPDATE sessiond_users SET version = version + 1 WHERE id = $1`,
	} {
		if _, err := tx.Exec(ctx, q, u.ID); err != nil {
			return factorErr("reset factors", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return factorErr("reset factors", err)
	}
	u.Version++
	return nil
}

// challengeKey is what a challenge is stored under: the SHA-256 hash of
// its ID.
func challengeKey(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// PutChallenge implements users.Factors. An expired challenge with the
// same ID is replaced. The sweep skips rows another instance's sweep has
// locked rather than wait for them.
func (db *DB) PutChallenge(ctx context.Context, c *users.Challenge) error {
	if err := users.ValidateChallenge(c); err != nil {
		return err
	}
	now := time.Now()
	data := c.Data
	if data == nil {
		data = []byte{}
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return factorErr("put challenge", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `DELETE FROM sessiond_challenges WHERE id_hash IN
		(SELECT id_hash FROM sessiond_challenges WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		now, sweepBatch); err != nil {
		return factorErr("put challenge", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO sessiond_challenges (id_hash, kind, user_id, data, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id_hash) DO UPDATE SET kind = excluded.kind, user_id = excluded.user_id,
			data = excluded.data, expires_at = excluded.expires_at
		WHERE sessiond_challenges.expires_at <= $6`,
		challengeKey(c.ID), c.Kind, c.UserID, data, c.ExpiresAt, now)
	if err != nil {
		return factorErr("put challenge", err)
	}
	if tag.RowsAffected() == 0 {
		return users.ErrExists
	}
	if err := tx.Commit(ctx); err != nil {
		return factorErr("put challenge", err)
	}
	return nil
}

// Challenge implements users.Factors.
func (db *DB) Challenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	return scanChallenge("challenge", id, db.pool.QueryRow(ctx, `SELECT kind, user_id, data, expires_at FROM sessiond_challenges
		WHERE id_hash = $1 AND kind = $2 AND expires_at > $3`, challengeKey(id), kind, time.Now()))
}

// TakeChallenge implements users.Factors: one DELETE … RETURNING; of two
// at once, the second waits for the first's row lock, then finds the row
// gone.
func (db *DB) TakeChallenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	return scanChallenge("take challenge", id, db.pool.QueryRow(ctx, `DELETE FROM sessiond_challenges
		WHERE id_hash = $1 AND kind = $2 AND expires_at > $3 RETURNING kind, user_id, data, expires_at`,
		challengeKey(id), kind, time.Now()))
}

func scanChallenge(op, id string, row pgx.Row) (*users.Challenge, error) {
	c := users.Challenge{ID: id}
	var exp pgtype.Timestamptz
	err := row.Scan(&c.Kind, &c.UserID, &c.Data, &exp)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr(op, err)
	}
	if len(c.Data) == 0 {
		c.Data = nil
	}
	if c.ExpiresAt, err = decodeTime(exp); err != nil {
		return nil, factorErr(op, err)
	}
	return &c, nil
}
