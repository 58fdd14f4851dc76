-- How the customer pays when it is not a link or a QR code: a bank transfer's virtual account.
ALTER TABLE payments ADD COLUMN bank_transfer jsonb;
