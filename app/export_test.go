package app

import (
	"context"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// VerifySecondFactor exposes verifySecondFactor to the tests of package
// app_test.
func (a *App) VerifySecondFactor(ctx context.Context, u *users.User, totp, recoveryCode string, client session.Client) ([]string, error) {
	return a.verifySecondFactor(ctx, u, totp, recoveryCode, client)
}
