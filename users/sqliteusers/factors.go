package sqliteusers

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sessiond/sessiond/internal/sqlitefile"
	"github.com/sessiond/sessiond/users"
)

var _ users.Factors = (*DB)(nil)

// sweepBatch is the most expired challenges PutChallenge deletes: each Put
// adds one and takes away up to this many, so the expired ones cannot pile
// up, and no Put does more than a bounded amount of work.
const sweepBatch = 64

// factorErr wraps a technical failure of op.
func factorErr(op string, err error) error {
	return fmt.Errorf("sqliteusers: %s: %w", op, err)
}

// TOTP implements users.Factors.
func (db *DB) TOTP(ctx context.Context, userID string) (*users.TOTP, error) {
	var (
		t         = users.TOTP{UserID: userID}
		confirmed int64
		created   sql.NullInt64
	)
	err := db.r.QueryRowContext(ctx, `SELECT secret, confirmed, last_step, created_at FROM user_totp WHERE user_id = ?1`, userID).
		Scan(&t.Secret, &confirmed, &t.LastStep, &created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr("totp", err)
	}
	t.Confirmed, t.CreatedAt = confirmed != 0, decodeTime(created)
	return &t, nil
}

// PutTOTP implements users.Factors. It returns users.ErrNotFound if there
// is no such user.
func (db *DB) PutTOTP(ctx context.Context, t *users.TOTP) error {
	if err := users.ValidateTOTP(t); err != nil {
		return err
	}
	created, err := encodeTime(t.CreatedAt)
	if err != nil {
		return factorErr("put totp", err)
	}
	// The user must exist, checked in the same statement as the write.
	res, err := db.w.ExecContext(ctx, `INSERT INTO user_totp (user_id, secret, confirmed, last_step, created_at)
		SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed,
			last_step = excluded.last_step, created_at = excluded.created_at`,
		t.UserID, t.Secret, encodeBool(t.Confirmed), t.LastStep, created)
	if err != nil {
		return factorErr("put totp", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return factorErr("put totp", err)
	} else if n == 0 {
		return users.ErrNotFound
	}
	return nil
}

// UseTOTPStep implements users.Factors. The check of the last step and
// the write are one UPDATE, which SQLite runs under the file's write lock.
func (db *DB) UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return factorErr("use totp step", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE user_totp SET last_step = ?2, confirmed = max(confirmed, ?3)
		WHERE user_id = ?1 AND last_step < ?2`, userID, step, encodeBool(confirm))
	if err != nil {
		return factorErr("use totp step", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return factorErr("use totp step", err)
	}
	if n == 0 {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM user_totp WHERE user_id = ?1)`, userID).Scan(&exists); err != nil {
			return factorErr("use totp step", err)
		}
		if !exists {
			return users.ErrNotFound
		}
		return users.ErrReplay
	}
	if err := tx.Commit(); err != nil {
		return factorErr("use totp step", err)
	}
	return nil
}

// DeleteTOTP implements users.Factors.
func (db *DB) DeleteTOTP(ctx context.Context, userID string) error {
	return db.execOne(ctx, "delete totp", `DELETE FROM user_totp WHERE user_id = ?1`, userID)
}

// execOne runs a DELETE or an UPDATE and returns users.ErrNotFound if it
// changed no row.
func (db *DB) execOne(ctx context.Context, op, query string, args ...any) error {
	res, err := db.w.ExecContext(ctx, query, args...)
	if err != nil {
		return factorErr(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return factorErr(op, err)
	}
	if n == 0 {
		return users.ErrNotFound
	}
	return nil
}

// userExists reports whether user id exists, read in tx.
func userExists(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var ok bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)`, id).Scan(&ok)
	return ok, err
}

// SetRecoveryCodes implements users.Factors. It returns users.ErrNotFound
// if there is no such user.
func (db *DB) SetRecoveryCodes(ctx context.Context, userID string, hashes [][]byte) error {
	if err := users.ValidateRecoveryCodeHashes(hashes); err != nil {
		return err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return factorErr("set recovery codes", err)
	}
	defer tx.Rollback()
	if ok, err := userExists(ctx, tx, userID); err != nil {
		return factorErr("set recovery codes", err)
	} else if !ok {
		return users.ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_recovery_codes WHERE user_id = ?1`, userID); err != nil {
		return factorErr("set recovery codes", err)
	}
	for _, h := range hashes {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO user_recovery_codes (user_id, hash) VALUES (?1, ?2)`, userID, h); err != nil {
			return factorErr("set recovery codes", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return factorErr("set recovery codes", err)
	}
	return nil
}

// UseRecoveryCode implements users.Factors: one DELETE, which only one of
// several at once can make.
func (db *DB) UseRecoveryCode(ctx context.Context, userID string, hash []byte) error {
	return db.execOne(ctx, "use recovery code", `DELETE FROM user_recovery_codes WHERE user_id = ?1 AND hash = ?2`, userID, hash)
}

// RecoveryCodesLeft implements users.Factors.
func (db *DB) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM user_recovery_codes WHERE user_id = ?1`, userID).Scan(&n); err != nil {
		return 0, factorErr("recovery codes left", err)
	}
	return n, nil
}

// passkeyColumns lists the stored fields of a passkey in the order
// scanPasskey reads them.
const passkeyColumns = `credential_id, user_id, name, public_key, attestation_type, aaguid, sign_count,
	transports, user_verified, backup_eligible, backup_state, created_at, last_used_at`

// AddPasskey implements users.Factors. It returns users.ErrNotFound if
// there is no such user. The count and the insert are in one write
// transaction, so that concurrent adds cannot pass MaxPasskeys.
func (db *DB) AddPasskey(ctx context.Context, p *users.Passkey) error {
	if err := users.ValidatePasskey(p); err != nil {
		return err
	}
	transports := p.Transports
	if transports == nil {
		transports = []string{}
	}
	tr, err := json.Marshal(transports)
	if err != nil {
		return factorErr("add passkey", err)
	}
	created, err := encodeTime(p.CreatedAt)
	if err != nil {
		return factorErr("add passkey", err)
	}
	used, err := encodeTime(p.LastUsedAt)
	if err != nil {
		return factorErr("add passkey", err)
	}
	aaguid := p.AAGUID
	if aaguid == nil {
		aaguid = []byte{}
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return factorErr("add passkey", err)
	}
	defer tx.Rollback()
	if ok, err := userExists(ctx, tx, p.UserID); err != nil {
		return factorErr("add passkey", err)
	} else if !ok {
		return users.ErrNotFound
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM user_passkeys WHERE user_id = ?1`, p.UserID).Scan(&n); err != nil {
		return factorErr("add passkey", err)
	}
	if n >= users.MaxPasskeys {
		return fmt.Errorf("%w: at most %d passkeys per user", users.ErrInvalid, users.MaxPasskeys)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO user_passkeys (`+passkeyColumns+`)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)`,
		p.CredentialID, p.UserID, p.Name, p.PublicKey, p.AttestationType, aaguid, int64(p.SignCount),
		string(tr), encodeBool(p.UserVerified), encodeBool(p.BackupEligible), encodeBool(p.BackupState), created, used)
	switch {
	case sqlitefile.IsExtendedCode(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
		return users.ErrExists
	case err != nil:
		return factorErr("add passkey", err)
	}
	if err := tx.Commit(); err != nil {
		return factorErr("add passkey", err)
	}
	return nil
}

// scanPasskey reads the columns passkeyColumns names from sc.
func scanPasskey(sc scanner) (*users.Passkey, error) {
	var (
		p                            users.Passkey
		signCount                    int64
		transports                   string
		verified, eligible, backedUp int64
		created, used                sql.NullInt64
	)
	if err := sc.Scan(&p.CredentialID, &p.UserID, &p.Name, &p.PublicKey, &p.AttestationType, &p.AAGUID, &signCount,
		&transports, &verified, &eligible, &backedUp, &created, &used); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(transports), &p.Transports); err != nil {
		return nil, fmt.Errorf("passkey transports: %w", err)
	}
	if len(p.Transports) == 0 {
		p.Transports = nil
	}
	if len(p.AAGUID) == 0 {
		p.AAGUID = nil
	}
	p.SignCount = uint32(signCount)
	p.UserVerified, p.BackupEligible, p.BackupState = verified != 0, eligible != 0, backedUp != 0
	p.CreatedAt, p.LastUsedAt = decodeTime(created), decodeTime(used)
	return &p, nil
}

// Passkeys implements users.Factors: oldest first, by CreatedAt, then in
// the order they were added.
func (db *DB) Passkeys(ctx context.Context, userID string) ([]*users.Passkey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+passkeyColumns+` FROM user_passkeys WHERE user_id = ?1
		ORDER BY created_at, rowid`, userID)
	if err != nil {
		return nil, factorErr("passkeys", err)
	}
	defer rows.Close()
	var list []*users.Passkey
	for rows.Next() {
		p, err := scanPasskey(rows)
		if err != nil {
			return nil, factorErr("passkeys", err)
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, factorErr("passkeys", err)
	}
	return list, nil
}

// PasskeyByID implements users.Factors.
func (db *DB) PasskeyByID(ctx context.Context, credentialID []byte) (*users.Passkey, error) {
	if users.ValidateCredentialID(credentialID) != nil {
		return nil, users.ErrNotFound
	}
	p, err := scanPasskey(db.r.QueryRowContext(ctx, `SELECT `+passkeyColumns+` FROM user_passkeys WHERE credential_id = ?1`, credentialID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr("passkey by id", err)
	}
	return p, nil
}

// UsePasskey implements users.Factors.
func (db *DB) UsePasskey(ctx context.Context, credentialID []byte, signCount uint32, backupState bool, at time.Time) error {
	t, err := encodeTime(at)
	if err != nil {
		return factorErr("use passkey", err)
	}
	return db.execOne(ctx, "use passkey", `UPDATE user_passkeys SET sign_count = ?2, backup_state = ?3, last_used_at = ?4
		WHERE credential_id = ?1`, credentialID, int64(signCount), encodeBool(backupState), t)
}

// RenamePasskey implements users.Factors.
func (db *DB) RenamePasskey(ctx context.Context, userID string, credentialID []byte, name string) error {
	if err := users.ValidatePasskeyName(name); err != nil {
		return err
	}
	return db.execOne(ctx, "rename passkey", `UPDATE user_passkeys SET name = ?3 WHERE user_id = ?1 AND credential_id = ?2`,
		userID, credentialID, name)
}

// DeletePasskey implements users.Factors.
func (db *DB) DeletePasskey(ctx context.Context, userID string, credentialID []byte) error {
	return db.execOne(ctx, "delete passkey", `DELETE FROM user_passkeys WHERE user_id = ?1 AND credential_id = ?2`,
		userID, credentialID)
}

// FactorSummaries implements users.Factors, in one query.
func (db *DB) FactorSummaries(ctx context.Context, userIDs []string) (map[string]users.FactorSummary, error) {
	out := make(map[string]users.FactorSummary, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	ids, err := json.Marshal(userIDs)
	if err != nil {
		return nil, factorErr("factor summaries", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT j.value,
			EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = j.value AND t.confirmed = 1),
			(SELECT count(*) FROM user_passkeys p WHERE p.user_id = j.value),
			(SELECT count(*) FROM user_recovery_codes r WHERE r.user_id = j.value)
		FROM (SELECT DISTINCT value FROM json_each(?1)) j`, string(ids))
	if err != nil {
		return nil, factorErr("factor summaries", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			s  users.FactorSummary
		)
		if err := rows.Scan(&id, &s.TOTP, &s.Passkeys, &s.RecoveryCodes); err != nil {
			return nil, factorErr("factor summaries", err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, factorErr("factor summaries", err)
	}
	return out, nil
}

// ResetFactors implements users.Factors, in one write transaction.
func (db *DB) ResetFactors(ctx context.Context, u *users.User) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return factorErr("reset factors", err)
	}
	defer tx.Rollback()
	var version int64
	err = tx.QueryRowContext(ctx, `SELECT version FROM users WHERE id = ?1`, u.ID).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return factorErr("reset factors", err)
	case version != u.Version:
		return users.ErrConflict
	}
	for _, q := range []string{
		`DELETE FROM user_totp WHERE user_id = ?1`,
		`DELETE FROM user_recovery_codes WHERE user_id = ?1`,
		`DELETE FROM user_passkeys WHERE user_id = ?1`,
		`UPDATE users SET version = version + 1 WHERE id = ?1`,
	} {
		if _, err := tx.ExecContext(ctx, q, u.ID); err != nil {
			return factorErr("reset factors", err)
		}
	}
	if err := tx.Commit(); err != nil {
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
// same ID is replaced.
func (db *DB) PutChallenge(ctx context.Context, c *users.Challenge) error {
	if err := users.ValidateChallenge(c); err != nil {
		return err
	}
	exp, err := encodeTime(c.ExpiresAt)
	if err != nil {
		return factorErr("put challenge", err)
	}
	now := time.Now().UnixNano()
	data := c.Data
	if data == nil {
		data = []byte{}
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return factorErr("put challenge", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM challenges WHERE id_hash IN
		(SELECT id_hash FROM challenges WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)`, now, sweepBatch); err != nil {
		return factorErr("put challenge", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO challenges (id_hash, kind, user_id, data, expires_at)
		VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (id_hash) DO UPDATE SET kind = excluded.kind, user_id = excluded.user_id,
			data = excluded.data, expires_at = excluded.expires_at
		WHERE challenges.expires_at <= ?6`,
		challengeKey(c.ID), c.Kind, c.UserID, data, exp, now)
	if err != nil {
		return factorErr("put challenge", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return factorErr("put challenge", err)
	} else if n == 0 {
		return users.ErrExists
	}
	if err := tx.Commit(); err != nil {
		return factorErr("put challenge", err)
	}
	return nil
}

// Challenge implements users.Factors.
func (db *DB) Challenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	return scanChallenge("challenge", id, db.r.QueryRowContext(ctx, `SELECT kind, user_id, data, expires_at FROM challenges
		WHERE id_hash = ?1 AND kind = ?2 AND expires_at > ?3`, challengeKey(id), kind, time.Now().UnixNano()))
}

// TakeChallenge implements users.Factors: one DELETE … RETURNING, which
// only one of several at once can make.
func (db *DB) TakeChallenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	return scanChallenge("take challenge", id, db.w.QueryRowContext(ctx, `DELETE FROM challenges
		WHERE id_hash = ?1 AND kind = ?2 AND expires_at > ?3 RETURNING kind, user_id, data, expires_at`,
		challengeKey(id), kind, time.Now().UnixNano()))
}

func scanChallenge(op, id string, row *sql.Row) (*users.Challenge, error) {
	c := users.Challenge{ID: id}
	var exp sql.NullInt64
	err := row.Scan(&c.Kind, &c.UserID, &c.Data, &exp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, users.ErrNotFound
	case err != nil:
		return nil, factorErr(op, err)
	}
	if len(c.Data) == 0 {
		c.Data = nil
	}
	c.ExpiresAt = decodeTime(exp)
	return &c, nil
}
